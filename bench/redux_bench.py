"""FluxRedux against FluxPriorReduxPipeline + FluxPipeline called directly, on the tiny models.

    python bench/redux_bench.py [--preset flux/dev] [--runs 7] [--size 64] [--threads 1]

1. Time: median wall time of one FluxRedux generation (node → core → cache → diffusers)
   against the same generation written by hand with diffusers on the same loaded pipeline
   objects (same reference, seed, steps, guidance and size; the direct side gets its PIL image
   for free), so the ratio is the cost of the wrapper. Goal: ratio ≤ 1.02. The order of the
   two sides alternates from run to run so that background load hits both alike.
2. Memory: one fresh process per variant loads Flux + Redux and generates once, with the
   Redux pipeline sharing the Flux text encoders (FluxRedux) or loading its own copies
   (what a hand-written script does when it loads both repos). Reported: bytes of distinct
   weight tensors held, and the process's peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup(threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_PRESETS_CACHE", str(Path(tempfile.gettempdir()) / "diffusers-presets-bench"))
    sys.path.insert(0, str(ROOT))
    import runner
    import torch

    runner.load_pack()
    from diffusers_presets.core.families._loading import quiet_progress_bars

    quiet_progress_bars()
    torch.set_num_threads(threads)


def reference(size: int = 48):
    import torch

    return torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(0))


def load_separate(tiny: dict):
    """FluxPipeline + a FluxPriorReduxPipeline with its own copies of the text encoders, as a
    hand-written script that loads both repos gets them."""
    from diffusers import FluxPipeline, FluxPriorReduxPipeline
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    flux = FluxPipeline.from_pretrained(str(tiny["flux"]))
    folder = tiny["flux"]
    text = {"text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder"),
            "tokenizer": AutoTokenizer.from_pretrained(folder / "tokenizer"),
            "text_encoder_2": T5EncoderModel.from_pretrained(folder / "text_encoder_2"),
            "tokenizer_2": AutoTokenizer.from_pretrained(folder / "tokenizer_2")}
    prior = FluxPriorReduxPipeline.from_pretrained(str(tiny["flux_redux"]), **text)
    for pipe in (flux, prior):
        pipe.set_progress_bar_config(disable=True)
    return flux, prior


def run_direct(flux, prior, picture, preset, size: int, seed: int):
    import torch

    embeds = prior(image=picture, prompt="")
    return flux(prompt_embeds=embeds.prompt_embeds, pooled_prompt_embeds=embeds.pooled_prompt_embeds,
                num_inference_steps=preset.steps, guidance_scale=preset.cfg, width=size, height=size,
                generator=[torch.Generator("cpu").manual_seed(seed)], output_type="pt", **preset.call_args).images


def weight_bytes(*pipes) -> int:
    """Bytes of the distinct tensor storages held by the pipelines' modules."""
    import torch

    seen: dict[int, int] = {}
    for pipe in pipes:
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                for tensor in [*component.parameters(), *component.buffers()]:
                    storage = tensor.untyped_storage()
                    seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def time_it(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def bench_time(preset_id: str, runs: int, size: int) -> None:
    import torch

    from diffusers_presets.core.images import to_pil_images
    from diffusers_presets.core.redux import redux_pipeline, redux_source
    from diffusers_presets.nodes.flux_redux import FluxRedux
    from diffusers_presets.core.handle import load_handle

    handle = load_handle(preset_id, "tiny")
    image = reference()
    node = FluxRedux()

    def ours():
        return node.generate(handle, image, 1, size, size, 1, "", 0.5)[0]

    def direct():
        return run_direct(flux, prior, picture, handle.preset, size, 1)

    first = ours()  # loads both pipelines
    flux, prior, picture = handle.pipeline(), redux_pipeline(handle, redux_source(handle)), to_pil_images(image)
    same = torch.equal(first, direct().permute(0, 2, 3, 1).clamp(0, 1))
    sides = {"FluxRedux": ours, "direct diffusers": direct}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for run in range(runs):
        for name in (list(sides) if run % 2 == 0 else list(sides)[::-1]):
            times[name].append(time_it(sides[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"time: {preset_id} on tiny models, {size}x{size}, {handle.preset.steps} steps, {runs} runs, "
          f"{torch.get_num_threads()} thread(s); identical images: {same}")
    print(f"  {'':18} {'median s':>9} {'min s':>8} {'max s':>8}")
    for name, values in times.items():
        print(f"  {name:18} {medians[name]:9.4f} {min(values):8.4f} {max(values):8.4f}")
    print(f"  ratio FluxRedux / direct (medians): {medians['FluxRedux'] / medians['direct diffusers']:.3f} "
          "(goal <= 1.02)")


def memory_child(variant: str, preset_id: str, size: int) -> None:
    """One variant in a fresh process; prints a JSON line."""
    from diffusers_presets.core.images import to_pil_images
    from diffusers_presets.core.redux import redux_pipeline, redux_source
    from diffusers_presets.core.sources import ensure_tiny_models
    from diffusers_presets.nodes.flux_redux import FluxRedux
    from diffusers_presets.core.handle import load_handle

    handle = load_handle(preset_id, "tiny")
    image = reference()
    if variant == "shared":
        FluxRedux().generate(handle, image, 1, size, size, 1, "", 0.5)
        pipes = (handle.pipeline(), redux_pipeline(handle, redux_source(handle)))
    else:
        pipes = load_separate(ensure_tiny_models())
        run_direct(*pipes, to_pil_images(image), handle.preset, size, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"weights": weight_bytes(*pipes), "peak_kib": peak}))


def bench_memory(preset_id: str, size: int, threads: int) -> None:
    rows = {}
    for variant in ("shared", "separate"):
        command = [sys.executable, __file__, "--memory-child", variant, "--preset", preset_id, "--size", str(size),
                   "--threads", str(threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[variant] = json.loads(output.strip().splitlines()[-1])
    print(f"memory: {preset_id} on tiny models, one fresh process each")
    print(f"  {'text encoders':26} {'weights KiB':>11} {'peak RSS MiB':>12}")
    labels = {"shared": "shared (FluxRedux)", "separate": "separate copies (direct)"}
    for variant, row in rows.items():
        print(f"  {labels[variant]:26} {row['weights'] / 1024:11.1f} {row['peak_kib'] / 1024:12.1f}")
    saved = rows["separate"]["weights"] - rows["shared"]["weights"]
    print(f"  sharing saves {saved / 1024:.1f} KiB of weights = one copy of CLIP + T5 "
          f"({saved / rows['separate']['weights']:.0%} of the separate total); with tiny weights the peak RSS "
          "is the Python/torch runtime's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="flux/dev")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = steadiest on a shared CPU)")
    parser.add_argument("--memory-child", choices=("shared", "separate"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    setup(args.threads)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.memory_child:
        memory_child(args.memory_child, args.preset, args.size)
        return
    bench_time(args.preset, args.runs, args.size)
    bench_memory(args.preset, args.size, args.threads)


if __name__ == "__main__":
    main()
