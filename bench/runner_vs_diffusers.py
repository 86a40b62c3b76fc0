"""`python -m runner` on an example workflow vs a plain diffusers script doing the same
generation, both timed as whole processes (interpreter start, imports, model load, sampling,
PNG write).

    python bench/runner_vs_diffusers.py [--preset sdxl/illustrious] [--repeat 5] [--size 64]

Both use the preset's tiny random-weight model (built once beforehand, outside the timing),
the preset's steps, CFG and sampler, the same prompt, seed and size. Goal: runner / diffusers
≤ 1.05.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runner  # noqa: E402

runner.load_pack()

from diffusers_presets.core.presets import registry  # noqa: E402
from diffusers_presets.core.sources import ensure_tiny_models  # noqa: E402

PLAIN_SCRIPT = '''
import sys, torch, diffusers
folder, scheduler, steps, cfg, size, seed, prompt, negative, out = sys.argv[1:]
pipe = diffusers.DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
if scheduler:
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
kwargs = dict(prompt=prompt, num_inference_steps=int(steps), guidance_scale=float(cfg),
              width=int(size), height=int(size), generator=torch.Generator("cpu").manual_seed(int(seed)))
if negative:
    kwargs["negative_prompt"] = negative
with torch.inference_mode():
    image = pipe(**kwargs).images[0]
image.save(out)
'''

# The schedulers the sdxl family maps preset sampler names to (core/families/sdxl.py).
SDXL_SCHEDULERS = {"euler": "EulerDiscreteScheduler", "euler_a": "EulerAncestralDiscreteScheduler",
                   "dpmpp_2m": "DPMSolverMultistepScheduler", "ddim": "DDIMScheduler"}


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sdxl/illustrious")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    preset = registry().get(args.preset)
    example = ROOT / "example_workflows" / f"{preset.id.replace('/', '-')}.json"
    workflow = json.loads(example.read_text())
    sampler = next(n for n in workflow["nodes"] if n["type"] == "FixedSampler")
    prompt, negative, seed = sampler["widgets_values"][0], sampler["widgets_values"][1], sampler["widgets_values"][2]
    folder = ensure_tiny_models()[preset.family]
    scheduler = SDXL_SCHEDULERS.get(preset.sampler, "") if preset.family == "sdxl" else ""
    negative = preset.render_negative(negative) if preset.family in ("sdxl", "chroma", "anima") else ""

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "plain.py"
        script.write_text(PLAIN_SCRIPT)
        runner_cmd = [sys.executable, "-m", "runner", str(example), "--model", f"{preset.id}=tiny",
                      "--set", f"{sampler['id']}.width={args.size}", "--set", f"{sampler['id']}.height={args.size}",
                      "--output-dir", str(work / "runner")]
        plain_cmd = [sys.executable, str(script), str(folder), scheduler, str(preset.steps), str(preset.cfg),
                     str(args.size), str(seed), preset.render_prompt(prompt), negative, str(work / "plain.png")]
        timed(runner_cmd, ROOT)  # warm the OS file cache for both
        timed(plain_cmd, work)
        runs, plains = [], []
        for _ in range(args.repeat):
            runs.append(timed(runner_cmd, ROOT))
            plains.append(timed(plain_cmd, work))
    run_s, plain_s = statistics.median(runs), statistics.median(plains)
    print(f"preset {preset.id} (tiny weights, {args.size}x{args.size}, {preset.steps} steps), median of {args.repeat}:")
    print(f"  python -m runner : {run_s:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in runs)})")
    print(f"  plain diffusers  : {plain_s:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in plains)})")
    print(f"  ratio            : {run_s / plain_s:.3f}  (goal <= 1.05)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
