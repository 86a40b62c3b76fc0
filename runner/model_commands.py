"""`python -m runner presets`, `tiny-models DIR`, `models` (discovery) and `sync WORKFLOW`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.errors import PresetsError
from ..core.presets import registry
from ..core.sources import source_present


def presets_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner presets",
                                     description="List the presets: id, family, fixed parameters, weights and "
                                                 "whether the weights are on this machine. Change them with "
                                                 "`presets add|edit|rm|default` (see `presets add --help`).")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    if argv and argv[0] in CONFIG_ACTIONS:
        return configurations_command(argv)
    args = parser.parse_args(argv)
    try:
        presets = registry().all()
    except PresetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [dict(p.summary(), present=source_present(p)) for p in presets]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("id", "family", "steps", "cfg", "sampler", "present", "source")
    table = [[str(row[c]) if c != "present" else ("yes" if row[c] else "no") for c in columns] for row in rows]
    _print_table(table, columns)
    return 0


def tiny_models_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner tiny-models",
                                     description="Write tiny random-weight pipelines in diffusers format for every "
                                                 "family and for Flux Redux (for tests and offline demos).")
    parser.add_argument("directory", type=Path, help="where to write <family>/ folders")
    args = parser.parse_args(argv)
    from ..core.families import build_all_tiny

    try:
        folders = build_all_tiny(args.directory)
    except OSError as exc:  # e.g. DIR is under a regular file, or not writable
        error = PresetsError("input_invalid", f"cannot write the tiny models to {args.directory}: {exc.strerror or exc}.",
                             "give a folder you can write to (it is created if missing).")
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, folder in sorted(folders.items()):
        print(f"{name}: {folder}")
    return 0


def _print_table(rows: list[list[str]], columns: tuple[str, ...], indent: str = "") -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print(indent + "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        print(indent + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def models_command(argv: list[str]) -> int:
    from ..core.discovery import listing

    parser = argparse.ArgumentParser(prog="python -m runner models",
                                     description="List the models on this machine by family: diffusers folders, "
                                                 "single-file checkpoints, Hugging Face cache entries and LoRAs "
                                                 "(with their Civitai metadata), and the presets that use each.")
    parser.add_argument("--family", help="only this family (sdxl, chroma, flux, zimage, anima, ...)")
    parser.add_argument("--json", action="store_true", help="print JSON ({schema, models: [...]}) instead of a table")
    parser.add_argument("--models-dir", type=Path, help="models folder (default $MODEL_BASE_PATH, else ./models)")
    parser.add_argument("--extra-model-paths", type=Path, action="append", default=[], metavar="YAML",
                        help="a ComfyUI extra_model_paths.yaml (./extra_model_paths.yaml is read automatically)")
    args = parser.parse_args(argv)
    try:
        _configure_models(args)
        result = listing(args.family)
    except PresetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    models = result["models"]
    if not models:
        from ..core.discovery import hub_cache_dir
        from ..core.host import get_host

        print("No models found" + (f" for family {args.family}" if args.family else "") +
              f" in {get_host().models_dir()} (diffusers/, checkpoints/, loras/) or the Hugging Face cache "
              f"({hub_cache_dir()}). Point --models-dir or an extra_model_paths.yaml at your models; "
              "`python -m runner tiny-models DIR` writes small test models.")
        return 0
    columns = ("kind", "name", "detail", "presets", "lora")
    for family in dict.fromkeys(m["family"] for m in models):
        print(f"{family or 'unknown'}:")
        rows = [[m["kind"], m["name"] + (f"@{m['revision']}" if m["revision"] else ""),
                 m["detail"] if m["supported"] else f"{m['detail']} (not loadable here)",
                 ", ".join(m["presets"]) or "-", _lora_text(m["lora"])]
                for m in models if m["family"] == family]
        _print_table(rows, columns, indent="  ")
    return 0


def _lora_text(info: dict | None) -> str:
    if not info:
        return ""
    parts = [info["air"], info["base_model"] and f"base {info['base_model']}",
             info["trigger_words"] and "triggers: " + ", ".join(info["trigger_words"])]
    return "; ".join(p for p in parts if p)


def _configure_models(args: argparse.Namespace) -> None:
    from ..core.host import HeadlessHost, get_host
    from .host_setup import configure_host

    host = get_host()
    if isinstance(host, HeadlessHost):
        # keep a models folder set before (tests, an embedding program) unless one is given
        configure_host(host, models_dir=args.models_dir or host.models_root, extra_paths_files=args.extra_model_paths,
                       model_overrides={})


def sync_command(argv: list[str]) -> int:
    """Exit codes: 0 done (or nothing to change), 1 a reference has no candidate (nothing
    written), 2 the workflow or the options are invalid."""
    from .sync import Unresolved, sync_workflow

    parser = argparse.ArgumentParser(prog="python -m runner sync",
                                     description="Rewrite a workflow's presets, model overrides and LoRA references "
                                                 "that this machine lacks to ones it has: the same name first, then "
                                                 "the same family. Nothing changes when a reference has no candidate.")
    parser.add_argument("workflow", help="UI or API workflow .json, or a .png saved by ComfyUI or the runner")
    parser.add_argument("-o", "--output", help="write here instead of rewriting WORKFLOW in place (- for stdout)")
    parser.add_argument("--by-name", action=argparse.BooleanOptionalAction, default=True,
                        help="replace by a model, preset or LoRA of the same name (default: on)")
    parser.add_argument("--by-family", action=argparse.BooleanOptionalAction, default=True,
                        help="else by one of the same family (default: on)")
    parser.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    parser.add_argument("--models-dir", type=Path, help="models folder (default $MODEL_BASE_PATH, else ./models)")
    parser.add_argument("--extra-model-paths", type=Path, action="append", default=[], metavar="YAML",
                        help="a ComfyUI extra_model_paths.yaml (./extra_model_paths.yaml is read automatically)")
    args = parser.parse_args(argv)
    if args.workflow == "-":
        print("error: sync needs a workflow file (it keeps the file's format); stdin is not accepted.", file=sys.stderr)
        return 2
    report = sys.stderr if args.output == "-" else sys.stdout
    try:
        _configure_models(args)
        changes, data = sync_workflow(args.workflow, args.output, by_name=args.by_name, by_family=args.by_family,
                                      dry_run=args.dry_run)
    except Unresolved as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        print("Nothing was changed.", file=sys.stderr)
        return 1
    except PresetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for change in changes:
        print(change.describe(), file=report)
    if not changes:
        print("Nothing to change: every preset, model and LoRA is available.", file=report)
    elif args.dry_run:
        print(f"{len(changes)} change(s); nothing written (--dry-run).", file=report)
    if data is not None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


CONFIG_ACTIONS = ("add", "edit", "rm", "default")


def _config_options(parser: argparse.ArgumentParser, adding: bool) -> None:
    parser.add_argument("--base", dest="base_model", required=adding,
                        help="base model: a family (sdxl, flux, ...) or an alias (pony, illustrious, flux_dev, ...)")
    parser.add_argument("--model", dest="model_id",
                        help="weights: tiny, org/name[@rev], a diffusers folder or a checkpoint file (none: a "
                             "base-type configuration)" if adding else "weights (see `presets add --help`)")
    parser.add_argument("--name")
    parser.add_argument("--description")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", dest="cfg_scale", type=float)
    parser.add_argument("--sampler", help="a sampler of the family, or 'default' for the pipeline's own")
    parser.add_argument("--clip-skip", type=int)
    parser.add_argument("--width", dest="resolution_width", type=int)
    parser.add_argument("--height", dest="resolution_height", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int, help="-1: random")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra pipeline argument (VALUE is JSON if it parses); repeatable")
    parser.add_argument("--default", dest="is_default", action=argparse.BooleanOptionalAction, default=None,
                        help="make it the default of its model (or of its base type when it has no model)")


def _config_body(args: argparse.Namespace) -> dict:
    from .host_setup import parse_assignment, parse_value

    names = ("base_model", "model_id", "name", "description", "steps", "cfg_scale", "sampler", "clip_skip",
             "resolution_width", "resolution_height", "batch_size", "seed", "is_default")
    body = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    if body.get("sampler") == "default":
        body["sampler"] = None
    params = {}
    for text in args.param:
        key, value = parse_assignment(text, "--param", "KEY=VALUE", "max_sequence_length=256")
        params[key] = parse_value(value, "--param")
    if params:
        body["additional_params"] = params
    return body


def configurations_command(argv: list[str]) -> int:
    """`presets add|edit|rm|default`: the configurations API from the command line."""
    from ..core.configurations import Store

    parser = argparse.ArgumentParser(prog="python -m runner presets",
                                     description="Create, change, remove presets (model configurations) in your "
                                                 "presets folder (PRESETS_DIR), or choose a default.")
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="a new preset")
    add.add_argument("id", nargs="?", help="<folder>/<name> (default: <family>/<name>)")
    _config_options(add, adding=True)
    edit = actions.add_parser("edit", help="change fields (on a shipped preset: writes your override)")
    edit.add_argument("id")
    _config_options(edit, adding=False)
    remove = actions.add_parser("rm", help="remove your preset, or your override of a shipped one")
    remove.add_argument("id")
    default = actions.add_parser("default", help="make it the default of its model, or of its base type")
    default.add_argument("id")
    for sub in (add, edit, remove, default):
        sub.add_argument("--json", action="store_true", help="print the configuration as JSON")
    args = parser.parse_args(argv)
    try:
        store = Store()
        if args.action == "add":
            body = _config_body(args)
            if args.id:
                body["id"] = args.id
            config = store.create(body, base="model_id" not in body)
        elif args.action == "edit":
            config = store.update(args.id, _config_body(args))
        elif args.action == "rm":
            config = store.delete(args.id)
        else:
            config = store.set_default(args.id)
    except PresetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(config, indent=2))
    elif config is None:
        print(f"removed {args.id}")
    elif args.action == "rm":
        print(f"removed your override of {args.id}; the shipped preset is back")
    else:
        print(f"{args.action}: {config['id']} ({config['base_model']}, model {config['model_id'] or '-'}, "
              f"{config['steps']} steps, CFG {config['cfg_scale']}, sampler {config['sampler'] or 'default'}"
              f"{', default' if config['is_default'] else ''})")
    return 0
