"""``python -m runner``: run a ComfyUI workflow headless.

    python -m runner WORKFLOW [--output-dir DIR] [--input-dir DIR] [--models-dir DIR]
                     [--set NODE_ID.INPUT=VALUE ...] [--model PRESET=SOURCE ...] [--json]
    python -m runner presets [--json]          (model_commands)
    python -m runner tiny-models DIR           (model_commands)
    python -m runner models [--family F] [--json]   (model_commands)
    python -m runner sync WORKFLOW [-o OUT] [--dry-run]   (model_commands)

Exit codes: 0 success, 1 execution error (``internal_error`` included), 2 invalid workflow,
130 interrupted.
Progress goes to stderr, the summary to stdout (``--json``: machine-readable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

from ..core import sources
from ..core.errors import PresetsError, one_line
from ..core.host import HeadlessHost, get_host
from . import core_nodes
from .convert import convert_workflow
from .engine import Engine, PromptResult, ValidationResult
from .engine import executor
from .engine.schema import display_title, node_schema
from .host_setup import configure_host, parse_assignment, parse_value
from .workflow_io import read_workflow

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
SUBCOMMANDS = ("presets", "tiny-models", "models", "sync")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runner",
        description="Run a ComfyUI workflow (UI or API JSON, a PNG with embedded metadata, or - "
        "for stdin) without ComfyUI. Other commands: 'serve', 'presets', 'tiny-models DIR', 'models', 'sync WORKFLOW' (each with --help).",
    )
    parser.add_argument("workflow", help="workflow .json, a .png saved by ComfyUI, or - for stdin")
    parser.add_argument("--output-dir", type=Path, default=Path("output"), help="where SaveImage writes (default ./output)")
    parser.add_argument("--input-dir", type=Path, default=Path("input"), help="where LoadImage reads (default ./input)")
    parser.add_argument("--temp-dir", type=Path, default=Path("temp"), help="where PreviewImage writes (default ./temp)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default $MODEL_BASE_PATH, else ./models)")
    parser.add_argument(
        "--extra-model-paths", type=Path, action="append", default=[], metavar="YAML",
        help="a ComfyUI extra_model_paths.yaml (./extra_model_paths.yaml is read automatically)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NODE_ID.INPUT=VALUE",
        help="override an input; VALUE is JSON if it parses, else a string (repeatable)",
    )
    parser.add_argument(
        "--model", action="append", default=[], metavar="PRESET=SOURCE",
        help="load PRESET's weights from SOURCE: 'tiny', a folder or a file (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv: debug)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _tolerant_streams()
    try:
        return _main(argv)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one coded line, not a traceback
        verbose = any(arg == "--verbose" or re.fullmatch(r"-v+", arg) for arg in argv)
        if "--json" in argv:
            error = {"code": "internal_error", "message": one_line(exc), "fix": INTERNAL_FIX}
            _emit_json({"prompt_id": None, "status": "error", "outputs": {}, "error": error})
        _internal_error(one_line(exc), None, "".join(traceback.format_exception(exc)) if verbose else "")
        return EXIT_ERROR


def _main(argv: list[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        from . import model_commands

        commands = {"presets": model_commands.presets_command, "tiny-models": model_commands.tiny_models_command,
                    "models": model_commands.models_command, "sync": model_commands.sync_command}
        return commands[argv[0]](argv[1:])
    if argv and argv[0] == "serve":
        from .server.main import serve_command

        return serve_command(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    return run_workflow(args)


# --- output ----------------------------------------------------------------------------------------------
# C0/C1 control characters (a workflow's "\x1b[2J" would clear the terminal) and lone surrogates
# (a strict UTF-8 terminal cannot print them); newlines and tabs stay.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (``\\x1b``, ``\\udcff``)."""
    return _UNPRINTABLE.sub(lambda match: ascii(match.group())[1:-1], text)


def _say(text: str, stream: Optional[TextIO] = None) -> None:
    """One line for the user, made printable: every text the CLI prints may carry workflow data."""
    (stream or sys.stderr).write(printable(text) + "\n")


def _tolerant_streams() -> None:
    """Characters the terminal's encoding lacks are printed escaped: the run's files are
    already written, so printing their names must not end it with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # not a text file, or closed
            stream.reconfigure(errors="backslashreplace")


INTERNAL_FIX = "run with -v for the traceback, and report it: this is a bug."


def _internal_error(summary: str, where: Optional[str], details: str) -> None:
    """An exception nobody turned into a coded error (``summary``: its type and first line):
    one line, and the traceback (``details``) only with -v."""
    place = f"error in {where}: " if where else "error: "
    _say(f"{place}[internal_error] {summary}. Fix: {INTERNAL_FIX}")
    if details:
        _say(details.rstrip("\n"))


def _not_an_engine_failure(record: logging.LogRecord) -> bool:
    return not getattr(record, executor.NODE_FAILURE, False)


@contextlib.contextmanager
def _errors_printed_once() -> Iterator[None]:
    """The engine logs each node failure (a server's log needs that line); a workflow run
    prints the same error itself, so its handlers drop the engine's line meanwhile."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, _StderrHandler)]
    for handler in handlers:
        handler.addFilter(_not_an_engine_failure)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_not_an_engine_failure)


_PACK = __name__.split(".")[0]  # our loggers' root: diffusers_presets


class _StderrHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is when a record is written, made printable."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        # Without -v the only INFO lines are our own announcements: print them as plain lines.
        self.plain_info = False

    def format(self, record: logging.LogRecord) -> str:
        if self.plain_info and record.levelno == logging.INFO and record.name.startswith(_PACK):
            return printable(record.getMessage())
        return printable(super().format(record))

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.plain_info = verbosity == 0
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    root.setLevel(level)
    # Building a tiny model on first use is announced even without -v: the user did not ask for it.
    logging.getLogger(sources.log.name).setLevel(min(level, logging.INFO))


# --- preparing the prompt -----------------------------------------------------------------------------
def apply_overrides(prompt: dict, assignments: list[str], registry: dict[str, type]) -> None:
    """``--set NODE_ID.INPUT=VALUE`` on the API prompt."""
    for text in assignments:
        target, value = parse_assignment(text, "--set", "NODE_ID.INPUT=VALUE", "3.seed=42")
        shown = repr(text if len(text) <= 80 else text[:77] + "...")  # a value may be megabytes
        node_id, dot, name = target.rpartition(".")
        if not dot or not node_id or not name:
            raise PresetsError("workflow_invalid", f"--set {shown}: expected NODE_ID.INPUT=VALUE.", "Example: --set 3.seed=42")
        node = prompt.get(node_id)
        if not isinstance(node, dict):
            raise PresetsError(
                "workflow_invalid",
                f"--set {shown}: the workflow has no node {node_id!r}.",
                f"Use one of the node ids: {', '.join(sorted(prompt, key=_natural))}.",
            )
        class_type, inputs = node.get("class_type"), node.setdefault("inputs", {})
        if not isinstance(class_type, str) or not isinstance(inputs, dict):
            raise PresetsError(
                "workflow_invalid",
                f"--set {shown}: node {node_id} is malformed (its class_type must be a string and its inputs an object).",
                "Export the workflow from ComfyUI again.",
            )
        class_def = registry.get(class_type)
        if class_def is not None:
            declared = node_schema(class_def).order
            if name not in declared:
                raise PresetsError(
                    "workflow_invalid",
                    f"--set {shown}: node {node_id} ({node['class_type']}) has no input {name!r}.",
                    f"Its inputs are: {', '.join(declared)}.",
                )
        inputs[name] = parse_value(value, "--set")


def _natural(node_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in node_id.split(":")), node_id


def load_prompt(source: str, registry: dict[str, type]) -> tuple[dict, dict]:
    """(API prompt, extra_data) from a workflow file; a PNG's own prompt is reused as is."""
    workflow = read_workflow(source)
    extra_data: dict = {}
    if workflow.ui is not None:
        extra_data["extra_pnginfo"] = {"workflow": workflow.ui}
    if workflow.prompt is not None:
        return workflow.prompt, extra_data
    return convert_workflow(workflow.ui, registry, core_nodes.display_names()), extra_data


# --- reporting -------------------------------------------------------------------------------------------
# Nodes whose progress counts bytes downloaded, not sampling steps.
BYTE_PROGRESS_NODES = {"CivitaiLoraLoader"}
BYTE_LINE_EVERY_S = 2.0


def _bytes_of(done: int, total: int) -> str:
    from ..core.civitai.download import format_size  # the network stack: only when downloading

    return f"{format_size(done)} of {format_size(total)}"


class ConsoleReporter:
    """Renders engine events on stderr: a progress bar on a terminal, plain lines otherwise."""

    def __init__(self, prompt: dict, stream: TextIO) -> None:
        self.prompt = prompt
        self.stream = stream
        self.tty = stream.isatty()
        self.bar_open = False
        self.last_byte_line = 0.0

    def _line(self, text: str) -> None:
        if self.bar_open:
            self.stream.write("\n")
            self.bar_open = False
        _say(text, self.stream)
        self.stream.flush()

    def __call__(self, event: str, data: dict) -> None:
        if event == "execution_cached" and data["nodes"]:
            self._line(f"cached: {len(data['nodes'])} node(s) unchanged since the last run")
        elif event == "executing":
            node_id = data["node"]
            node = self.prompt[node_id]
            self._line(f"▶ node {node_id} {display_title(node, node_id)!r} ({node['class_type']})")
        elif event == "progress":
            value, total = data["value"], data["max"]
            downloading = self.prompt.get(data.get("node"), {}).get("class_type") in BYTE_PROGRESS_NODES
            text = _bytes_of(value, total) if downloading else f"step {value}/{total}"
            if self.tty:
                width = 30
                filled = int(width * value / max(total, 1))
                self.stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {text}")
                self.stream.flush()
                self.bar_open = True
            elif not downloading or value >= total or time.monotonic() - self.last_byte_line >= BYTE_LINE_EVERY_S:
                # a download reports every chunk: one line every few seconds is enough in a log
                self.last_byte_line = time.monotonic()
                self._line(f"  {text}")
        elif event == "executed" and self.bar_open:
            self._line("")


def _files(result: PromptResult) -> dict[str, list[dict]]:
    files: dict[str, list[dict]] = {}
    for node_id, ui in result.outputs.items():
        for value in ui.values():
            if isinstance(value, list):
                files.setdefault(node_id, []).extend(
                    {k: item[k] for k in ("filename", "subfolder", "type")}
                    for item in value
                    if isinstance(item, dict) and "filename" in item
                )
    return files


def _file_path(item: dict) -> Path:
    return core_nodes.DIRECTORIES.by_type(item["type"]) / item["subfolder"] / item["filename"]


def _print_invalid(validation: ValidationResult, prompt: dict, stream: TextIO) -> None:
    _say("The workflow is invalid:", stream)
    for node_id, entry in validation.node_errors.items():
        node = prompt.get(node_id, {})
        title = display_title(node, node_id) if isinstance(node, dict) else node_id
        for error in entry["errors"]:
            name = error["extra_info"].get("input_name")
            where = f"node {node_id} {title!r} ({entry['class_type']})" + (f", input {name!r}" if name else "")
            _say(f"  {where}: {error['message']}" + (f": {error['details']}" if error["details"] else ""), stream)
    if not validation.node_errors and validation.error:
        _say(f"  {validation.error['message']}" + (f": {validation.error['details']}" if validation.error["details"] else ""), stream)


def _summary(result: PromptResult, prompt: dict, elapsed: float) -> dict:
    files = _files(result)
    return {
        "prompt_id": result.prompt_id,
        "status": result.status,
        "seconds": round(elapsed, 3),
        "outputs": {
            node_id: {
                "class_type": prompt[node_id]["class_type"],
                "title": display_title(prompt[node_id], node_id),
                "files": items,
            }
            for node_id, items in files.items()
        },
        # Uncoded node failures get the code the CLI prints for them.
        "error": result.error if not result.error or "error_code" in result.error
        else {**result.error, "error_code": "internal_error", "fix": INTERNAL_FIX},
    }


# --- running -------------------------------------------------------------------------------------------
class _InterruptHandler:
    """First Ctrl-C: stop at the next step; second: abort now."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pressed = False
        self.previous: Any = None

    def __enter__(self) -> "_InterruptHandler":
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        self.engine.interrupt()
        sys.stderr.write("\nInterrupting at the next step (Ctrl-C again to abort now)...\n")


def _emit_json(payload: dict) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def run_workflow(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    host = get_host()
    if not isinstance(host, HeadlessHost):
        raise RuntimeError("the runner needs the headless host; it cannot run inside ComfyUI")
    try:
        configure_host(
            host,
            models_dir=args.models_dir,
            extra_paths_files=args.extra_model_paths,
            model_overrides=dict(
                parse_assignment(text, "--model", "PRESET=SOURCE", "sdxl/illustrious=tiny") for text in args.model
            ),
        )
        core_nodes.set_directories(output=args.output_dir, input=args.input_dir, temp=args.temp_dir)
        registry = core_nodes.node_registry()
        prompt, extra_data = load_prompt(args.workflow, registry)
        apply_overrides(prompt, args.set, registry)
    except PresetsError as ex:
        if args.json:
            _emit_json({"prompt_id": None, "status": "invalid", "error": ex.to_dict(), "node_errors": {}})
        _say(f"error: {ex}")
        return EXIT_INVALID

    engine = Engine(registry, host)
    validation = engine.validate(prompt)
    if not validation.ok or validation.node_errors:
        if args.json:
            _emit_json({"prompt_id": None, "status": "invalid", **validation.to_response()})
        _print_invalid(validation, prompt, sys.stderr)
        return EXIT_INVALID

    reporter = ConsoleReporter(validation.prompt, sys.stderr)
    try:
        with _InterruptHandler(engine), _errors_printed_once():
            result = engine.run(validation, str(uuid.uuid4()), extra_data, reporter)
    except KeyboardInterrupt:
        _say("\nAborted.")
        if args.json:
            _emit_json({"prompt_id": None, "status": "interrupted", "outputs": {}, "error": None})
        return EXIT_INTERRUPTED
    elapsed = time.perf_counter() - started
    summary = _summary(result, validation.prompt, elapsed)
    if args.json:
        _emit_json(summary)
    if result.status == "interrupted":
        _say(f"Interrupted at node {result.error['node_id']}; no partial files were written.")
        return EXIT_INTERRUPTED
    if result.status == "error":
        _print_failure(result.error, validation.prompt, args.verbose)
        return EXIT_ERROR
    if not args.json:
        files = [item for items in _files(result).values() for item in items]
        _say(f"Done in {elapsed:.1f} s: {len(files)} file(s).", sys.stdout)
        for item in files:
            _say(f"  {_file_path(item)}", sys.stdout)
    return EXIT_OK


def _print_failure(error: dict, prompt: dict, verbose: int) -> None:
    """The engine's execution error, once: coded errors as they are, anything else as
    ``internal_error`` (with the traceback under -v)."""
    node_id = error["node_id"]
    where = f"node {node_id} {display_title(prompt[node_id], node_id)!r} ({error['node_type']})"
    if error.get("error_code"):
        _say(f"error in {where}: {error['exception_message']}")
        return
    kind = error["exception_type"].rpartition(".")[2]
    first = next((line.strip() for line in error["exception_message"].splitlines() if line.strip()), "")
    trace = "Traceback (most recent call last):\n" + "".join(error["traceback"])
    details = f"{trace}{error['exception_type']}: {error['exception_message']}" if verbose else ""
    _internal_error(f"{kind}: {first}" if first else kind, where, details)

