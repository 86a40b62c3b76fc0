"""`python -m runner presets` and `python -m runner tiny-models DIR`."""

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
                                                 "whether the weights are on this machine.")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
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
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def tiny_models_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner tiny-models",
                                     description="Write tiny random-weight pipelines in diffusers format for every "
                                                 "family and for Flux Redux (for tests and offline demos).")
    parser.add_argument("directory", type=Path, help="where to write <family>/ folders")
    args = parser.parse_args(argv)
    from ..core.families import build_all_tiny

    folders = build_all_tiny(args.directory)
    for name, folder in sorted(folders.items()):
        print(f"{name}: {folder}")
    return 0
