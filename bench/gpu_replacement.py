"""On a CUDA machine: every VRAM profile on a real accelerator, and switching profiles on a
loaded pipeline without reading its weights again (``PipelineCache`` re-places it).

    python bench/gpu_replacement.py [--family sdxl] [--size 256] [--runs 3]

Prints, per profile in the order full → balanced → lowvram → full: the plan applied, the
median seconds per generation, the peak GPU memory, the largest pixel difference against the
first "full" image, and the cache's load and re-placement counters (loads must stay 1).
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

from diffusers_presets.core.cache import pipeline_cache  # noqa: E402
from diffusers_presets.core.handle import load_handle  # noqa: E402
from diffusers_presets.core.sampler import GenerationRequest, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", default="sdxl")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("needs a CUDA device")
    cache = pipeline_cache()
    base = load_handle(f"demo/{args.family}")
    reference = None
    for profile in ("full", "balanced", "lowvram", "full"):
        handle = base.with_vram_profile(profile)
        request = GenerationRequest("a red fox in the snow", seed=3, width=args.size, height=args.size)
        generate(handle, request)  # warm-up (and the re-placement)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        seconds = []
        for _ in range(args.runs):
            started = time.perf_counter()
            images = generate(handle, request).images
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        reference = images if reference is None else reference
        entry = cache.entry(handle)
        print(f"{profile:9s} plan={entry.plan.applied:8s} {statistics.median(seconds) * 1000:8.1f} ms  "
              f"peak {torch.cuda.max_memory_allocated() / 2**20:8.1f} MiB  "
              f"max|diff| vs full {float((images - reference).abs().max()):.4f}  "
              f"loads={cache.loads} placements={cache.placements}")


if __name__ == "__main__":
    main()
