"""Foundation benchmarks.

1. Pack import time (the way ComfyUI imports it) and which heavy modules it pulls in.
2. FixedSampler against calling the same diffusers pipeline directly with the same arguments,
   in the same process, on tiny SDXL and tiny Flux: ratio of medians (goal <= 1.02).

    python bench/foundation_bench.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.comfy_loading import LOAD_PACK  # noqa: E402

HEAVY = ("torch", "diffusers", "transformers", "accelerate", "peft", "compel", "numpy", "PIL", "yaml", "aiohttp")

IMPORT_SCRIPT = """
import time
started = time.perf_counter()
""" + LOAD_PACK + f"""
import json
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def bench_import(repeats: int) -> None:
    import json

    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], capture_output=True, text=True, check=True,
                             cwd=tempfile.gettempdir())
        runs.append(json.loads(out.stdout))
    seconds = statistics.median(r["seconds"] for r in runs)
    print(f"pack import: median {seconds * 1000:.1f} ms over {repeats} fresh processes; "
          f"heavy modules imported: {runs[0]['heavy'] or 'none'}")


def bench_sampler(preset_id: str, repeats: int) -> None:
    import torch

    from diffusers_presets.core.families import get_family
    from diffusers_presets.core.families.base import SamplingParams
    from diffusers_presets.nodes.fixed_sampler import FixedSampler
    from diffusers_presets.nodes.preset_loader import PresetLoader

    (handle,) = PresetLoader().load(preset_id)
    preset = handle.preset
    pipe = handle.pipeline()
    family = get_family(preset.family)
    prompt, negative, seed = "a lighthouse on a cliff", "blurry", 3
    params = SamplingParams(
        prompt=preset.render_prompt(prompt),
        negative_prompt=preset.render_negative(negative) if preset.negative_prompt else None,
        steps=preset.steps, guidance_scale=preset.cfg, width=preset.width, height=preset.height, batch_size=1,
        seed=seed, sampler=preset.sampler, clip_skip=preset.clip_skip, extra=dict(preset.call_args),
    )
    family.apply_sampler(pipe, preset.sampler)

    def direct() -> torch.Tensor:
        kwargs = family.call_kwargs(pipe, params)  # the exact arguments FixedSampler passes
        kwargs["generator"] = params.generators()
        return pipe(**kwargs)

    def node() -> torch.Tensor:
        return FixedSampler().sample(handle, prompt, negative, seed, 0, 0, 1)[0]

    node(), direct()  # warm-up
    node_times, direct_times = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        for runs, call in ((node_times, node), (direct_times, direct)):
            started = time.perf_counter()
            call()
            runs.append(time.perf_counter() - started)
    ratio = statistics.median(node_times) / statistics.median(direct_times)
    print(f"{preset_id} ({preset.steps} steps, {preset.width}x{preset.height}): FixedSampler "
          f"{statistics.median(node_times) * 1000:.1f} ms, direct diffusers {statistics.median(direct_times) * 1000:.1f} ms, "
          f"ratio {ratio:.3f} (goal <= 1.02)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("DIFFUSERS_PRESETS_CACHE", str(Path(tempfile.gettempdir()) / "dp-bench-cache"))
    bench_import(min(args.repeats, 10))
    import runner

    runner.load_pack()
    import logging

    logging.disable(logging.WARNING)  # keep per-run log lines (and the ignored-negative warning) out of the timings
    for preset_id in ("demo/sdxl", "demo/flux"):
        bench_sampler(preset_id, args.repeats)


if __name__ == "__main__":
    main()
