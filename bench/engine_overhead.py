"""Engine bookkeeping per prompt (validation, cache keys, scheduling) on stub graphs.

    python bench/engine_overhead.py [--repeat N]

The stub nodes do no work, so the times are the engine's own. For each size it reports the
median of N prompts: ``validate`` (validation only), ``cold`` (validate + run, every node
executes), ``cached`` (validate + run of the same prompt again: nothing executes) and
``reseed`` (one constant at the root changed: everything downstream re-runs).
Goal: ≤ 2 ms at 50 nodes, growing linearly with the node count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import runner  # noqa: E402

runner.load_pack()

from diffusers_presets.core.host import HeadlessHost  # noqa: E402
from diffusers_presets.runner.engine import Engine  # noqa: E402


class Source:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**63})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, seed):
        return (seed,)


class Mix:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "a": ("INT",),
                "b": ("INT",),
                "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0}),
                "mode": (["add", "sub"],),
            },
            "optional": {"label": ("STRING", {"default": ""})},
        }

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def run(self, a, b, scale, mode, label=""):
        return (a + b,)


class Sink:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT",)}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"

    def run(self, value):
        return {"ui": {"values": [value]}}


REGISTRY = {"Source": Source, "Mix": Mix, "Sink": Sink}


def graph(size: int, seed: int = 1) -> dict:
    """A source, ``size - 2`` Mix nodes each fed by the previous node and one further back,
    and a sink."""
    prompt = {"0": {"class_type": "Source", "inputs": {"seed": seed}}}
    for i in range(1, size - 1):
        prompt[str(i)] = {
            "class_type": "Mix",
            "inputs": {"a": [str(i - 1), 0], "b": [str(i // 2), 0], "scale": 0.5, "mode": "add", "label": f"n{i}"},
        }
    prompt[str(size - 1)] = {"class_type": "Sink", "inputs": {"value": [str(size - 2), 0]}}
    return prompt


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def measure(size: int, repeat: int) -> dict[str, float]:
    validate, cold, cached, reseed = [], [], [], []
    for i in range(repeat):
        engine = Engine(REGISTRY, HeadlessHost())
        prompt = graph(size)
        validate.append(timed(lambda: engine.validate(prompt)))
        cold.append(timed(lambda: engine.run(engine.validate(prompt))))
        cached.append(timed(lambda: engine.run(engine.validate(prompt))))
        reseed.append(timed(lambda: engine.run(engine.validate(graph(size, seed=i + 2)))))
    return {name: statistics.median(v) for name, v in
            (("validate", validate), ("cold", cold), ("cached", cached), ("reseed", reseed))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"{'nodes':>6} {'validate ms':>12} {'cold ms':>9} {'cached ms':>10} {'reseed ms':>10} {'cached µs/node':>15}")
    for size in (10, 50, 200, 500):
        r = measure(size, args.repeat)
        print(f"{size:>6} {r['validate']:>12.3f} {r['cold']:>9.3f} {r['cached']:>10.3f} {r['reseed']:>10.3f} "
              f"{1000 * r['cached'] / size:>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
