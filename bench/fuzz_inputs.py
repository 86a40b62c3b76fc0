"""Fuzz the runner's input handling: every bad workflow must end in a coded error, never a traceback.

    python bench/fuzz_inputs.py [--mutations N] [--seed S]

Inputs: random mutations of the UI workflows in example_workflows/ and of their API
conversions (a value swapped for an odd one, a key or list item dropped, a container wrapped
in a list), odd ``--set`` assignments, and the generated bombs and corruptions of
tests/runner/bad_inputs.py (nesting, digit, PNG-header, expansion and dynamic-prompt bombs,
malformed UI and API files). ComfyUI's templates that use subgraphs are mutated too when
comfyui-workflow-templates (a test dependency) is installed. Each runs in process through ``runner.cli.main``; nothing
executes: ``Engine.run`` is replaced by a stub, so a workflow that passes validation counts as
exit 0 ("would run"). Reported: inputs tried, outcomes by exit code, tracebacks (any exception
escaping ``main`` or a traceback / ``[internal_error]`` on stderr; goal 0), the slowest input
and the peak memory. Takes well under two minutes on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "runner"))

import runner  # noqa: E402

runner.load_pack()

import bad_inputs as bad  # noqa: E402
from diffusers_presets.runner import cli, core_nodes  # noqa: E402
from diffusers_presets.runner.convert import convert_workflow  # noqa: E402
from diffusers_presets.runner.engine import Engine  # noqa: E402

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, -100, 2**70, 1.5, float("nan"), "", "x", "{a|{b|c}}", "%date:yyyy%/%x.y%",
    [], [1], [[1]], ["1", 0], ["999", 0], {}, {"a": 1}, {"__value__": [1]}, "9" * 5000,
]
# {S}: the id of the example's FixedSampler
ODD_SETS = [
    "=", "x=1", ".=1", "{S}.=2", "999.seed=1", "{S}.nothing=1", "{S}.seed=", "{S}.seed=null", "{S}.seed=[1, 2]",
    "{S}.seed={}", "{S}.seed=1e999", "{S}.seed=NaN", "{S}.seed=" + "9" * 4301, "{S}.prompt=" + "[" * 1100,
    "{S}.prompt=" + bad.deep_json(150), "{S}.prompt=" + bad.nested_choices(1000), "{S}.seed=-1", "{S}.width=7",
]


class _WouldRun(BaseException):
    """Raised instead of running a prompt that passed validation (not an Exception: nothing
    in the CLI may swallow it)."""


def _no_run(*args: Any, **kwargs: Any) -> None:
    raise _WouldRun


def _paths(value: Any) -> list[tuple]:
    """Every path (tuple of keys) into a JSON value, without recursion."""
    found, pending = [], [((), value)]
    while pending:
        path, item = pending.pop()
        found.append(path)
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        pending.extend((path + (key,), child) for key, child in children)
    return found


def mutate(value: Any, rng: random.Random) -> Any:
    """One random structural change to a copy of ``value``."""
    value = copy.deepcopy(value)
    path = rng.choice([p for p in _paths(value) if p])
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    action = rng.random()
    if action < 0.6:
        parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
    elif action < 0.8:
        del parent[key]
    elif action < 0.9:
        parent[key] = [parent[key]]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))  # a duplicate (same node id, same link id)
    else:
        parent[key] = json.loads(json.dumps(parent[key])) if rng.random() < 0.5 else str(parent[key])
    return value


def inputs(mutations: int, rng: random.Random) -> Iterator[tuple[str, Any, list[str]]]:
    """(name, file content: JSON value, text or PNG bytes, extra CLI args)."""
    registry = core_nodes.node_registry()
    examples = sorted((ROOT / "example_workflows").glob("*.json"))
    workflows = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in examples}
    workflows["bad_inputs.base_workflow"] = bad.base_workflow()  # subgraph, group node, Set/Get, bypass
    workflows.update(_subgraph_templates())
    prompts = {name: convert_workflow(wf, registry, rng=random.Random(0)) for name, wf in workflows.items()}
    yield "bomb: json nested 1100 deep", bad.deep_json(1100), []
    deep_value = {"1": {"class_type": "LoadImage", "inputs": {"image": json.loads(bad.deep_json(150))}}}
    yield "bomb: json nested 150 deep", json.dumps(deep_value), []
    yield "bomb: 4301-digit integer", bad.big_int_prompt(4301), []
    yield "bomb: PNG header 100000x100000", bad.png(100_000, 100_000), []
    for key in ("prompt", "workflow"):
        for compressed in (False, True):
            data = bad.png(texts={key: bad.deep_json(1100)}, compressed=compressed)
            yield f"bomb: PNG {key} chunk nested 1100 deep (compressed={compressed})", data, []
    yield "bomb: subgraphs 2**40", bad.subgraph_bomb(40), []
    yield "bomb: group nodes 2**40", bad.group_node_bomb(40), []
    bomb_prompt = copy.deepcopy(workflows["demo_sdxl"])
    for node in bomb_prompt["nodes"]:
        if node["type"] == "FixedSampler":
            node["widgets_values"][0] = bad.nested_choices(1000)
    yield "bomb: {a|b} nested 1000 deep", bomb_prompt, []
    for name, _, _ in bad.CORRUPTIONS:
        yield f"corruption: {name}", bad.corrupted(name), []
    for name, prompt, _ in bad.api_prompts():
        yield f"api: {name}", prompt, ["--set", "1.image=x.png"]
    sampler = next(node_id for node_id, node in prompts["demo_sdxl"].items() if node["class_type"] == "FixedSampler")
    for text in ODD_SETS:
        yield f"--set {text[:30]}", prompts["demo_sdxl"], ["--set", text.replace("{S}", sampler)]
    names = sorted(workflows)
    for n in range(mutations):
        name = names[n % len(names)]
        steps = 1 + (n % 3)
        if n % 4 == 3:
            value = prompts[name]
            for _ in range(steps):
                value = mutate(value, rng)
            yield f"api mutation {n} of {name}", value, []
        else:
            value = workflows[name]
            for _ in range(steps):
                value = mutate(value, rng)
            yield f"ui mutation {n} of {name}", value, []


def _subgraph_templates() -> dict[str, dict]:
    """ComfyUI's templates that use subgraphs (from the test dependency, when installed)."""
    try:
        import comfyui_workflow_templates
    except ImportError:
        return {}
    found = {}
    for path in sorted((Path(comfyui_workflow_templates.__file__).parent / "templates").glob("*.json")):
        workflow = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(workflow, dict) and (workflow.get("definitions") or {}).get("subgraphs"):
            found[path.stem] = workflow
    return found


def run_one(path: Path, args: list[str], workdir: Path) -> tuple[Any, str]:
    """(exit code or 'would run' / 'traceback: …', stderr)."""
    err, out = io.StringIO(), io.StringIO()
    argv = [str(path), *args, "--output-dir", str(workdir / "out"), "--input-dir", str(workdir / "in"),
            "--temp-dir", str(workdir / "temp"), "--models-dir", str(workdir / "models")]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code: Any = cli.main(argv)
        except _WouldRun:
            code = 0
        except SystemExit as ex:  # argparse
            code = ex.code
        except BaseException as ex:  # noqa: BLE001 - what the fuzzer is looking for
            return f"traceback: {type(ex).__name__}: {str(ex)[:120]}", err.getvalue()
    text = err.getvalue()
    if "Traceback" in text or "internal_error" in text:
        return "traceback: " + next((line for line in text.splitlines() if "internal_error" in line or "Error" in line), text[-200:]), text
    return code, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mutations", type=int, default=6_000, help="random mutations of the examples (default 6000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    Engine.run = _no_run  # type: ignore[method-assign]
    outcomes: Counter = Counter()
    tracebacks: list[str] = []
    slowest = (0.0, "")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for n, (name, content, extra) in enumerate(inputs(args.mutations, rng)):
            path = workdir / (f"input{n}.png" if isinstance(content, bytes) else f"input{n}.json")
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
            began = time.perf_counter()
            code, _ = run_one(path, extra, workdir)
            elapsed = time.perf_counter() - began
            slowest = max(slowest, (elapsed, name))
            if isinstance(code, str) and code.startswith("traceback"):
                outcomes["traceback"] += 1
                tracebacks.append(f"{name}: {code}")
            else:
                outcomes[f"exit {code}"] += 1
            path.unlink()
    total = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inputs tried: {sum(outcomes.values())} in {total:.1f} s")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    print(f"tracebacks: {len(tracebacks)} (goal 0)")
    for line in tracebacks[:20]:
        print(f"  {line}")
    print(f"slowest input: {slowest[1]} ({slowest[0] * 1000:.0f} ms); peak memory {peak_mib:.0f} MiB")
    return 1 if tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
