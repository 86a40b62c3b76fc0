"""The Images API's overhead: one generation on tiny Flux (flux/schnell's 4 steps, 64 px) three ways.

    python bench/openai_bench.py [--runs 20] [--size 64] [--preset flux/schnell]

- direct: ``core.sampler.generate`` on a loaded handle, plus the PNG encoding the API does;
- /prompt: the API's own graph (PresetLoader → FixedSampler → ImagesApiOutput) through
  ``POST /prompt``, waiting for ``executing {node: null}`` on a websocket;
- /v1: ``client.images.generate`` with the official ``openai`` SDK (b64_json), whole request;
- stream: ``stream=true, partial_images=2``: time to the first partial image and to the final one.

Each run uses a new seed (nothing is served from the engine's cache). Medians in ms; the
ratios are against the direct call. The server runs in this process on its own thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "server")]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import runner  # noqa: E402

runner.load_pack()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--preset", default="flux/schnell", help="a flux preset, run on the tiny model")
    args = parser.parse_args()

    import openai
    from server_helpers import Socket, http, make_settings

    from diffusers_presets.core.handle import load_handle
    from diffusers_presets.core.host import HeadlessHost, set_host
    from diffusers_presets.core.sampler import GenerationRequest, generate
    from diffusers_presets.nodes.api_io import encode
    from diffusers_presets.runner.server.main import ThreadedServer
    from diffusers_presets.runner.server.openai_api import generation_graph
    from diffusers_presets.runner.server.openai_params import ApiOptions, ImageJob

    set_host(HeadlessHost())
    root = Path(tempfile.mkdtemp(prefix="openai-bench-"))
    settings = make_settings(root, model_overrides={args.preset: "tiny"},
                             openai=ApiOptions(aliases={"gpt-image-1": args.preset}))
    server = ThreadedServer(settings).start()
    size = args.size
    seeds = iter(range(1, 10**6))

    def direct() -> None:
        output = generate(handle, GenerationRequest(prompt="a fox", seed=next(seeds), width=size, height=size))
        encode(output.images[0], "png", 100)

    socket = Socket(server.url, "bench")

    def through_prompt() -> None:
        job = ImageJob(preset_id=args.preset, prompt="a fox", n=1, width=size, height=size, seed=next(seeds),
                       model=args.preset)
        graph = generation_graph(job, str(uuid.uuid4()), set())
        prompt_id = http("POST", server.url + "/prompt", {"prompt": graph, "client_id": "bench"}).json()["prompt_id"]
        socket.until_done(prompt_id)

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="bench", max_retries=0)

    def through_api() -> None:
        client.images.generate(prompt="a fox", model="gpt-image-1", size=f"{size}x{size}",
                               extra_body={"seed": next(seeds)})

    first_event: list[float] = []

    def streamed() -> None:
        started = time.perf_counter()
        for index, _event in enumerate(client.images.generate(prompt="a fox", model="gpt-image-1", stream=True,
                                                              partial_images=2, size=f"{size}x{size}",
                                                              extra_body={"seed": next(seeds)})):
            if index == 0:
                first_event.append(time.perf_counter() - started)

    handle = load_handle(args.preset)
    results = {}
    try:
        for name, call in (("direct", direct), ("/prompt", through_prompt), ("/v1", through_api),
                           ("stream", streamed)):
            call()  # warm-up: loads the pipeline once
            first_event.clear()
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            results[name] = statistics.median(times) * 1000
    finally:
        socket.close()
        server.stop()
    base = results["direct"]
    print(f"{args.preset} on the tiny model, {size}x{size}, {handle.preset.steps} steps, median of {args.runs} runs")
    for name, value in results.items():
        print(f"  {name:8s} {value:8.1f} ms   {value / base:5.2f}x   overhead {value - base:+7.1f} ms")
    print(f"  stream (partial_images=2): first partial image {statistics.median(first_event) * 1000:.1f} ms, "
          f"final image {results['stream']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
