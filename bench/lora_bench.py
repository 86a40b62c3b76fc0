"""LoRA load, reweight and swap through core.lora.apply against the raw diffusers calls.

    python bench/lora_bench.py [--repeat 20]

Uses the tiny SDXL and Flux pipelines and tiny LoRAs (built into a temporary folder). Each
figure is the median over --repeat runs; the ratio is ours / raw (goal <= 1.2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_ms(action, repeat: int, setup=lambda: None) -> float:
    times = []
    for _ in range(repeat):
        setup()
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    import runner

    runner.load_pack()
    import torch

    from diffusers_presets.core.families import build_all_tiny, get_family
    from diffusers_presets.core.families.base import ModelSource
    from diffusers_presets.core.handle import LoraSpec
    from diffusers_presets.core.lora import apply
    from tests.lora.tiny_lora import make_tiny_lora

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    folders = build_all_tiny(work / "tiny")
    print(f"{'family':8} {'operation':9} {'ours ms':>8} {'raw ms':>8} {'ratio':>6}")
    for family in ("sdxl", "flux"):
        def fresh():
            return get_family(family).load(ModelSource("folder", path=folders[family]), torch.float32)

        pipe = fresh()
        paths = [make_tiny_lora(pipe, family, work / f"{family}_{i}.safetensors", seed=i) for i in (1, 2)]
        specs = [LoraSpec(adapter_name=f"dp_{i}", path=p) for i, p in enumerate(paths)]
        holder = {}

        def reset() -> None:
            holder["pipe"] = fresh()

        load_ours = median_ms(lambda: apply.activate_loras(holder["pipe"], family, (specs[0],)), args.repeat, reset)
        load_raw = median_ms(lambda: (holder["pipe"].load_lora_weights(str(paths[0]), adapter_name="dp_0"),
                                      holder["pipe"].set_adapters(["dp_0"], [1.0])), args.repeat, reset)
        pipe = fresh()
        apply.activate_loras(pipe, family, (specs[0],))
        apply.activate_loras(pipe, family, (specs[1],))
        weights = iter([0.3, 0.7] * args.repeat)
        reweight_ours = median_ms(lambda: apply.activate_loras(
            pipe, family, (LoraSpec(adapter_name="dp_0", path=paths[0], weight=next(weights)),)), args.repeat)
        reweight_raw = median_ms(lambda: pipe.set_adapters(["dp_0"], [next(weights)]), args.repeat)
        which = iter([0, 1] * args.repeat)
        swap_ours = median_ms(lambda: apply.activate_loras(pipe, family, (specs[next(which)],)), args.repeat)
        swap_raw = median_ms(lambda: pipe.set_adapters([f"dp_{next(which)}"], [1.0]), args.repeat)
        for name, ours, raw in (("load", load_ours, load_raw), ("reweight", reweight_ours, reweight_raw),
                                ("swap", swap_ours, swap_raw)):
            print(f"{family:8} {name:9} {ours:8.2f} {raw:8.2f} {ours / raw:6.2f}")


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    main()
