"""Live previews: latent2rgb, the binary frames and their delivery per client feature."""

from __future__ import annotations

import io

import numpy as np
from engine_stubs import StubSteps
from PIL import Image
from server_helpers import Socket, http, stub_registry

from diffusers_presets.core.previews import latent_to_image
from diffusers_presets.runner.server import previews


def test_sdxl_factors_and_the_fallback_projection() -> None:
    image = latent_to_image(np.zeros((4, 8, 10), dtype=np.float32), "sdxl")
    assert image.size == (80, 64)  # 8x the latent
    assert image.getpixel((5, 5)) == (150, 140, 130)  # the bias
    first_channel = np.zeros((4, 8, 8), dtype=np.float32)
    first_channel[0] = 1
    assert latent_to_image(first_channel, "sdxl").getpixel((0, 0)) == (210, 200, 190)
    rng = np.random.default_rng(0)
    flux = latent_to_image(rng.standard_normal((16, 128, 128)).astype(np.float32), "flux")
    assert flux.size == (512, 512)  # capped at MAX_PREVIEW_SIZE
    assert np.array(flux).std() > 10  # structure is visible


def test_frames() -> None:
    jpeg = previews.encode_jpeg(Image.new("RGB", (16, 16), (255, 0, 0)))
    kind, meta, data = previews.decode_frame(previews.frame(jpeg))
    assert (kind, meta, data) == (previews.PREVIEW_IMAGE, None, jpeg)
    frame = previews.frame(jpeg, {"node_id": "3", "prompt_id": "p"})
    assert frame[:4] == b"\x00\x00\x00\x04"
    kind, meta, data = previews.decode_frame(frame)
    assert kind == 4 and meta == {"node_id": "3", "prompt_id": "p", "image_type": "image/jpeg"} and data == jpeg
    throttle = previews.Throttle(60)
    assert throttle.ready("a") and not throttle.ready("a")
    assert throttle.ready("b") and not throttle.ready("b")  # each prompt's first preview passes


def test_preview_frames_reach_clients_by_feature(make_server) -> None:
    server = make_server(stub_registry())
    modern, legacy = Socket(server.url, "modern"), Socket(server.url, "legacy")
    modern.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    assert modern.next()["type"] == "feature_flags"
    latent = np.zeros((4, 8, 8), dtype=np.float32)

    def hook(step: int) -> None:
        if step == 1:
            server.context.service.preview("1", latent, "sdxl")

    StubSteps.HOOKS.append(hook)
    try:
        reply = http("POST", server.url + "/prompt", {"prompt": {
            "1": {"class_type": "StubSteps", "inputs": {"steps": 2}},
            "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}})  # no client_id: broadcast
        prompt_id = reply.json()["prompt_id"]
        modern.until_done(prompt_id)
        legacy.until_done(prompt_id)
    finally:
        StubSteps.HOOKS.remove(hook)
    kind, meta, data = previews.decode_frame(modern.frames[0])
    assert kind == 4 and meta["node_id"] == "1" and meta["prompt_id"] == prompt_id
    assert Image.open(io.BytesIO(data)).size == (64, 64)
    kind, meta, data = previews.decode_frame(legacy.frames[0])
    assert kind == 1 and Image.open(io.BytesIO(data)).format == "JPEG"
    assert len(modern.frames) == len(legacy.frames) == 1


def test_a_tiny_model_run_sends_previews_per_client_feature(make_server, tmp_path) -> None:
    """The engine's per-step hook on a real tiny SDXL pipeline, over a real websocket: type 4
    with the sampler's node id and the prompt id to a client that announced
    supports_preview_metadata, type 1 JPEG to one that did not, and each prompt's first step
    passes the rate limit even right after another prompt's previews."""
    from test_pipeline import _demo_prompt

    server = make_server(root=tmp_path / "on")
    modern, legacy = Socket(server.url, "modern"), Socket(server.url, "legacy")
    modern.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    assert modern.next()["type"] == "feature_flags"
    for seed in (1, 2):  # no client_id: previews go to everyone
        prompt_id = http("POST", server.url + "/prompt", {"prompt": _demo_prompt(seed)}).json()["prompt_id"]
        steps = [m for m in modern.until_done(prompt_id) if m["type"] == "progress"]
        legacy.until_done(prompt_id)
        assert steps and len(modern.frames) <= len(steps) * seed
        kind, meta, data = previews.decode_frame(modern.frames[-1])
        assert kind == 4 and meta["node_id"] == "3" and meta["prompt_id"] == prompt_id
        assert meta["image_type"] == "image/jpeg" and Image.open(io.BytesIO(data)).size == (64, 64)
        kind, meta, data = previews.decode_frame(legacy.frames[-1])
        assert kind == 1 and meta is None and Image.open(io.BytesIO(data)).format == "JPEG"
        assert len(modern.frames) == len(legacy.frames) >= seed

    quiet = make_server(root=tmp_path / "off", preview_method="none")
    ws = Socket(quiet.url, "modern")
    ws.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    prompt_id = http("POST", quiet.url + "/prompt", {"prompt": _demo_prompt(3), "client_id": "modern"}).json()["prompt_id"]
    assert any(m["type"] == "progress" for m in ws.until_done(prompt_id)) and ws.frames == []
