"""The OpenAI-compatible Images API driven by the official ``openai`` SDK against the runner
server on 127.0.0.1, with the tiny Flux model behind flux/schnell (4 steps, 64 px)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np
import openai
import pytest
from aiohttp import web
from PIL import Image
from server_helpers import http, make_settings, multipart

from diffusers_presets.runner import core_nodes
from diffusers_presets.runner.server.main import ThreadedServer, default_tables
from diffusers_presets.runner.server.openai_files import ImageFiles
from diffusers_presets.runner.server.openai_params import ApiOptions
from diffusers_presets.runner.server.store import QueueItem

TINY = {"flux/schnell": "tiny", "flux/dev": "tiny", "sdxl/illustrious": "tiny"}


class Api:
    """A started server, the requests it received per path, and SDK clients for it."""

    def __init__(self, server: ThreadedServer, counts: Counter) -> None:
        self.server = server
        self.counts = counts

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, key: str = "test-key", retries: int = 0) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=retries)


@pytest.fixture
def start_api(tmp_path: Path, host):
    """``start_api(**options)`` → an :class:`Api` whose model ``gpt-image-1`` is tiny flux/schnell."""
    servers: list[ThreadedServer] = []

    def factory(root: Optional[Path] = None, max_upload_mb: float = 1.0, **options: Any) -> Api:
        counts: Counter = Counter()

        def count(app: web.Application) -> None:
            async def on_prepare(request: web.Request, _response: web.StreamResponse) -> None:
                counts[request.path] += 1

            app.on_response_prepare.append(on_prepare)

        api_options = ApiOptions(aliases={"gpt-image-1": "flux/schnell"}, **options)
        settings = make_settings(root or tmp_path, model_overrides=dict(TINY), openai=api_options,
                                 max_upload_size_mb=max_upload_mb)
        server = ThreadedServer(settings, tables=[lambda context: count, *default_tables()]).start()
        servers.append(server)
        return Api(server, counts)

    yield factory
    for server in servers:
        server.stop()
    core_nodes.set_directories(output=Path.cwd() / "output", input=Path.cwd() / "input", temp=Path.cwd() / "temp")


def _image(data: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


def test_generations_b64_url_and_formats_through_the_queue(start_api) -> None:
    api = start_api()
    client = api.client()
    reply = client.images.generate(prompt="a fox", model="gpt-image-1", n=2, extra_body={"seed": 7})
    assert reply.size == "64x64" and reply.output_format == "png" and reply.created > 0
    first, second = (_image(base64.b64decode(item.b64_json)) for item in reply.data)
    assert first.format == "PNG" and first.size == (64, 64)
    assert first.tobytes() != second.tobytes()  # image i uses seed + i
    # By its preset id, alone: the batch's first image again (batched math may round differently).
    again = _image(base64.b64decode(client.images.generate(prompt="a fox", model="flux/schnell",
                                                            extra_body={"seed": 7}).data[0].b64_json))
    assert np.abs(np.asarray(again, dtype=int) - np.asarray(first, dtype=int)).max() <= 2

    by_url = client.images.generate(prompt="a fox", model="gpt-image-1", response_format="url",
                                    output_format="jpeg", output_compression=80, extra_body={"seed": 7})
    assert by_url.data[0].b64_json is None and by_url.data[0].url.startswith(api.url + "/v1/images/data/")
    fetched = http("GET", by_url.data[0].url)
    assert fetched.status == 200 and fetched.headers["Content-Type"] == "image/jpeg"
    assert _image(fetched.body).format == "JPEG"
    webp = client.images.generate(prompt="a fox", model="gpt-image-1", output_format="webp", extra_body={"seed": 7})
    assert _image(base64.b64decode(webp.data[0].b64_json)).format == "WEBP"

    # The same queue and history as ComfyUI prompts: each request is a prompt in /history.
    history = http("GET", api.url + "/history").json()
    graphs = [entry["prompt"][2] for entry in history.values()]
    assert len(graphs) == 4 and all(graph["output"]["class_type"] == "ImagesApiOutput" for graph in graphs)
    assert {graph["sampler"]["inputs"]["seed"] for graph in graphs} == {7}


def test_streaming_partial_images_then_the_non_streamed_image(start_api) -> None:
    api = start_api()
    client = api.client()
    events = list(client.images.generate(prompt="a cat", model="gpt-image-1", stream=True, partial_images=2,
                                         extra_body={"seed": 11}))
    # Computed again, not replayed from the engine's cache (nor are the steps of the next stream).
    assert http("POST", api.url + "/free", {"free_memory": True}).status == 200
    plain = client.images.generate(prompt="a cat", model="gpt-image-1", extra_body={"seed": 11})
    # flux/schnell's 4 steps: partial 0 after step 2, partial 1 after step 3, then the image.
    assert [event.type for event in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [event.partial_image_index for event in events[:2]] == [0, 1]
    assert all(_image(base64.b64decode(event.b64_json)).size == (64, 64) for event in events)
    assert events[0].b64_json != events[1].b64_json
    assert events[-1].b64_json == plain.data[0].b64_json and events[-1].size == "64x64"
    only_final = list(client.images.generate(prompt="a cat", model="gpt-image-1", stream=True,
                                             extra_body={"seed": 12}))
    assert [event.type for event in only_final] == ["image_generation.completed"]


def test_models_list_and_retrieve(start_api) -> None:
    client = start_api().client()
    ids = [model.id for model in client.models.list()]
    assert {"flux/schnell", "sdxl/illustrious", "gpt-image-1", "dall-e-2"} <= set(ids)
    assert client.models.retrieve("flux/dev").owned_by == "diffusers-presets"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "preset_not_found"


def test_bad_requests_are_400_envelopes_and_never_retried(start_api) -> None:
    api = start_api()
    client = api.client(retries=2)
    cases = [
        ({"size": "65x64"}, "unsupported_size", "size"),
        ({"extra_body": {"guidance_scale": 2.0}}, "parameter_fixed", "guidance_scale"),
        ({"extra_body": {"num_inference_steps": 8}}, "parameter_fixed", "num_inference_steps"),
        ({"background": "transparent"}, "unsupported_value", "background"),
        ({"n": 0}, "invalid_value", "n"),
        ({"n": 100}, "invalid_value", "n"),
        ({"extra_body": {"bogus": 1}}, "unknown_parameter", "bogus"),
        ({"model": "sdxl/illustrious", "quality": "high"}, "unsupported_value", "quality"),
        ({"extra_body": {"lora_settings": [{"weight": 1}]}}, "invalid_value", "lora_settings"),
        ({"output_format": "gif"}, "invalid_value", "output_format"),
    ]
    for kwargs, code, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.generate(prompt="x", **{"model": "gpt-image-1", **kwargs})
        error = caught.value
        assert (error.code, error.param, error.type) == (code, param, "invalid_request_error"), kwargs
    with pytest.raises(openai.BadRequestError) as fixed:
        client.images.generate(prompt="x", model="gpt-image-1", extra_body={"guidance_scale": 2.0})
    assert "steps = 4" in fixed.value.message and "/configurations" in fixed.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.images.generate(prompt="x", model="dall-e-9")
    assert missing.value.code == "preset_not_found" and missing.value.param == "model"
    assert api.counts["/v1/images/generations"] == len(cases) + 2  # not one retry
    # A LoRA that points to nothing fails in the graph (the node's resolver): still a 400.
    with pytest.raises(openai.BadRequestError) as lora:
        client.images.generate(prompt="x", model="gpt-image-1",
                               extra_body={"lora_settings": [{"name": "missing/none.safetensors", "weight": 0.8}]})
    assert lora.value.code.startswith("lora_")
    raw = http("POST", api.url + "/v1/images/generations", raw=b"{not json",
               headers={"Content-Type": "application/json"})
    assert raw.status == 400 and raw.json()["error"]["code"] == "invalid_json"
    unknown = http("GET", api.url + "/v1/nothing-here")
    assert unknown.status == 404 and unknown.json()["error"]["type"] == "invalid_request_error"


def test_deterministic_server_failure_is_not_retried(start_api) -> None:
    """zimage/turbo has no weights here: 500 with x-should-retry false, sent once."""
    api = start_api()
    with pytest.raises(openai.InternalServerError) as caught:
        api.client(retries=2).images.generate(prompt="x", model="zimage/turbo", size="64x64")
    assert caught.value.code == "model_not_found"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert api.counts["/v1/images/generations"] == 1


def test_queue_full_is_429_and_retried_as_we_say(start_api) -> None:
    api = start_api(max_queue=1)
    service = api.server.context.service
    # A pending prompt the worker is not woken for (put without notify): the queue is "full".
    service.store.put(QueueItem(number=1, prompt_id="blocker", prompt={}, extra_data={}, outputs_to_execute=[]))
    with pytest.raises(openai.RateLimitError) as caught:
        api.client(retries=1).images.generate(prompt="x", model="gpt-image-1")
    assert caught.value.code == "queue_full" and caught.value.response.headers["retry-after"] == "1"
    assert api.counts["/v1/images/generations"] == 2  # retried once, as the header allows
    service.delete_pending(["blocker"])
    service.accepting = False  # shutting down: 503 that says "retry"
    with pytest.raises(openai.InternalServerError) as closing:
        api.client(retries=1).images.generate(prompt="x", model="gpt-image-1")
    assert closing.value.status_code == 503 and closing.value.response.headers["x-should-retry"] == "true"
    assert api.counts["/v1/images/generations"] == 4


def test_api_key_is_required_when_set(start_api) -> None:
    api = start_api(api_key="s3cret")
    with pytest.raises(openai.AuthenticationError) as caught:
        api.client(key="wrong", retries=2).models.list()
    assert caught.value.code == "invalid_api_key" and "s3cret" not in str(caught.value)
    assert api.counts["/v1/models"] == 1
    assert [m.id for m in api.client(key="s3cret").models.list()]


def test_hostile_values_are_4xx_envelopes_that_quote_little(start_api) -> None:
    """Nesting past the JSON parser's depth, digit strings past int()'s limit, integers past a
    float's range and a key header that is not UTF-8: 4xx envelopes, never the bare 500."""
    api = start_api(api_key="s3cret")
    url = api.url + "/v1/images/generations"
    auth = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    deep = http("POST", url, raw=b"[" * 100000 + b"]" * 100000, headers=auth)
    assert deep.status == 400 and deep.json()["error"]["code"] == "invalid_json"
    cases = [
        ({"seed": "9" * 5000}, "invalid_value", "seed"),
        ({"n": 10**400}, "invalid_value", "n"),
        ({"lora_settings": "[" * 100000}, "invalid_value", "lora_settings"),
        ({"lora_settings": [{"name": "a.safetensors", "weight": 10**400}]}, "invalid_type", "weight"),
        ({"quality": ["x"] * 10000}, "invalid_value", "quality"),
    ]
    for fields, code, param in cases:
        reply = http("POST", url, raw=json.dumps({"prompt": "x", "model": "gpt-image-1", **fields}).encode(),
                     headers=auth)
        error = reply.json()["error"]
        assert (reply.status, error["code"], error["param"]) == (400, code, param), fields
        assert len(error["message"]) < 200, fields  # the value is quoted short, not echoed whole
    not_utf8 = http("POST", url, {"prompt": "x"}, headers={"Authorization": "Bearer s3\xe9\xff"})
    assert not_utf8.status == 401 and not_utf8.json()["error"]["code"] == "invalid_api_key"
    assert b"s3cret" not in not_utf8.body


def test_url_images_expire_and_are_deleted(start_api, tmp_path: Path) -> None:
    data = tmp_path / "images"
    data.mkdir()
    stale = data / ("a" * 32 + ".png")
    stale.write_bytes(b"old")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    api = start_api(data_dir=data, image_ttl_s=600, base_url="https://images.example/base")
    assert not stale.exists()  # swept at start-up
    reply = api.client().images.generate(prompt="x", model="gpt-image-1", response_format="url",
                                         extra_body={"seed": 1})
    url = reply.data[0].url
    assert url.startswith("https://images.example/base/v1/images/data/")  # BASE_URL behind a proxy
    local = api.url + url[len("https://images.example/base"):]
    assert http("GET", local).status == 200
    (served,) = list(data.iterdir())
    os.utime(served, (time.time() - 601, time.time() - 601))
    expired = http("GET", local)
    assert expired.status == 404 and expired.json()["error"]["code"] == "file_not_found"
    assert ImageFiles(data, 600).sweep() == 1 and not served.exists()  # what the timer runs
    assert http("GET", api.url + "/v1/images/data/..%2f..%2fuser%2frunner.db").status == 404



def _png(size: tuple[int, int] = (64, 64), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 200 if mode == "1" else (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _graphs(api: Api) -> list[dict]:
    return [entry["prompt"][2] for entry in http("GET", api.url + "/history").json().values()]


def test_variations_flux_redux_and_sdxl_img2img(start_api) -> None:
    api = start_api()
    client = api.client()
    reply = client.images.create_variation(image=("in.png", _png(), "image/png"), model="gpt-image-1", n=1,
                                           extra_body={"seed": 3, "prompt": "in autumn"})
    assert _image(base64.b64decode(reply.data[0].b64_json)).size == (64, 64)
    reply = client.images.create_variation(image=("in.png", _png((72, 64)), "image/png"), model="sdxl/illustrious",
                                           extra_body={"seed": 3, "strength": "0.5"})
    assert _image(base64.b64decode(reply.data[0].b64_json)).size == (72, 64)  # size auto = the input's
    redux, img2img = sorted(_graphs(api), key=lambda graph: graph["sampler"]["class_type"])
    assert redux["sampler"]["class_type"] == "FluxRedux" and redux["input"]["class_type"] == "ImagesApiInput"
    assert img2img["sampler"]["class_type"] == "ImageEdit" and img2img["sampler"]["inputs"]["strength"] == 0.5
    with pytest.raises(openai.BadRequestError) as other:
        client.images.create_variation(image=("in.png", _png(), "image/png"), model="anima/preview")
    assert other.value.code == "family_mismatch" and "sdxl, flux" in other.value.message


def _mask(size: tuple[int, int] = (64, 64)) -> bytes:
    """Opaque left half (keep), transparent right half (edit), as OpenAI defines masks."""
    picture = Image.new("RGBA", size, (0, 0, 0, 255))
    picture.paste((0, 0, 0, 0), (size[0] // 2, 0, size[0], size[1]))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def test_edits_inpaint_with_a_mask_and_img2img_without(start_api) -> None:
    api = start_api()
    client = api.client()
    masked = client.images.edit(image=("in.png", _png(), "image/png"), mask=("m.png", _mask(), "image/png"),
                                prompt="a hat", model="gpt-image-1", extra_body={"seed": 2, "strength": 0.75})
    assert _image(base64.b64decode(masked.data[0].b64_json)).size == (64, 64)
    plain = client.images.edit(image=("in.png", _png(), "image/png"), prompt="a hat", model="sdxl/illustrious",
                               n=2, output_format="webp", extra_body={"seed": 2})
    assert len(plain.data) == 2 and _image(base64.b64decode(plain.data[1].b64_json)).format == "WEBP"
    events = list(client.images.edit(image=("in.png", _png(), "image/png"), prompt="a hat", model="gpt-image-1",
                                     stream=True, partial_images=1, extra_body={"seed": 2}))
    assert [event.type for event in events] == ["image_edit.partial_image", "image_edit.completed"]
    inpaint, *img2img = sorted(_graphs(api), key=lambda graph: "mask" not in graph["sampler"]["inputs"])
    assert inpaint["sampler"]["inputs"]["mask"] == ["input", 1] and inpaint["sampler"]["inputs"]["strength"] == 0.75
    assert len(img2img) == 2 and all(graph["sampler"]["class_type"] == "ImageEdit" for graph in img2img)
    refusals = [
        ({"model": "chroma/flash", "mask": ("m.png", _mask(), "image/png")}, "family_mismatch"),  # no inpaint
        ({"model": "anima/preview"}, "family_mismatch"),
        ({"mask": ("m.png", _mask((32, 32)), "image/png")}, "invalid_value"),
        ({"image": [("a.png", _png(), "image/png"), ("b.png", _png(), "image/png")], "model": "sdxl/illustrious"},
         "unsupported_value"),  # several images: Flux Redux only
        ({"image": [("a.png", _png(), "image/png"), ("b.png", _png(), "image/png")],
          "mask": ("m.png", _mask(), "image/png")}, "unsupported_value"),
        ({"extra_body": {"strength": 1.5}}, "invalid_value"),
    ]
    for kwargs, code in refusals:
        arguments = {"image": ("in.png", _png(), "image/png"), "prompt": "a hat", "model": "gpt-image-1", **kwargs}
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.edit(**arguments)
        assert caught.value.code == code, kwargs


def test_several_images_in_one_edit_are_flux_redux_references(start_api) -> None:
    api = start_api()
    client = api.client()
    images = [("a.png", _png(), "image/png"), ("b.png", _png((48, 80)), "image/png")]
    reply = client.images.edit(image=images, prompt="both in one scene", model="flux/schnell", extra_body={"seed": 4})
    assert _image(base64.b64decode(reply.data[0].b64_json)).size == (64, 64)  # size auto: the first image's
    (graph,) = _graphs(api)
    assert graph["sampler"]["class_type"] == "FluxRedux" and graph["sampler"]["inputs"]["reference"] == ["input", 0]
    assert graph["sampler"]["inputs"]["prompt"] == "both in one scene"
    from diffusers_presets.nodes import api_io

    api_io.provide("two", [Image.new("RGB", (64, 64)), Image.new("RGB", (48, 80))])
    try:
        image, mask = api_io.ImagesApiInput().load("two")
    finally:
        api_io.take("two")
    assert tuple(image.shape) == (2, 64, 64, 3) and tuple(mask.shape) == (2, 64, 64)  # one reference each


def test_api_input_node_marks_transparent_pixels_for_editing() -> None:
    """OpenAI's mask rule (alpha 0 = edit) becomes ComfyUI's MASK (1 = repaint)."""
    from diffusers_presets.nodes import api_io

    api_io.provide("req", Image.open(io.BytesIO(_png())).convert("RGB"), Image.open(io.BytesIO(_mask())))
    try:
        image, mask = api_io.ImagesApiInput().load("req")
    finally:
        api_io.take("req")
    assert tuple(image.shape) == (1, 64, 64, 3) and tuple(mask.shape) == (1, 64, 64)
    assert float(mask[0, :, :32].max()) == 0.0 and float(mask[0, :, 32:].min()) == 1.0


def test_bad_multipart_bodies_are_4xx_envelopes(start_api) -> None:
    api = start_api()
    client = api.client()
    url = api.url + "/v1/images/variations"
    broken = http("POST", url, raw=b"--xyz\r\nnot a part",
                  headers={"Content-Type": "multipart/form-data; boundary=abc"})
    assert broken.status == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    as_json = http("POST", url, {"image": "x"})
    assert as_json.status == 400 and as_json.json()["error"]["code"] == "invalid_content_type"
    cases = [
        ({"image": ("a.png", b"this is not an image", "image/png")}, "invalid_image"),
        ({"image": ("big.png", _png((10000, 5000), "1"), "image/png")}, "image_too_large"),
        ({"image": ("a.png", _png(), "image/png"), "n": 0}, "invalid_value"),
        ({"image": ("a.png", _png(), "image/png"), "n": 100}, "invalid_value"),
        ({"image": ("a.png", _png(), "image/png"), "extra_body": {"colour": "red"}}, "unknown_parameter"),
    ]
    for kwargs, code in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.create_variation(**kwargs)
        assert caught.value.code == code, kwargs
    body, content_type = multipart({"n": "1"})
    missing = http("POST", url, raw=body, headers={"Content-Type": content_type})
    assert missing.status == 400 and missing.json()["error"]["code"] == "missing_required_parameter"
    body, content_type = multipart({"image": ("a.png", b"x" * (2 * 1024 * 1024))})
    huge = http("POST", url, raw=body, headers={"Content-Type": content_type})
    assert huge.status == 413 and huge.json()["error"]["code"] == "request_too_large"
    assert api.counts[url[len(api.url):]] == 2 + len(cases) + 2


def test_interrupted_and_failed_prompts_map_to_envelopes() -> None:
    """History entries (runner's, and ComfyUI's whose errors carry only the message) → errors."""
    from diffusers_presets.runner.server.openai_api import outcome_of
    from diffusers_presets.runner.server.openai_errors import from_core

    interrupted = outcome_of({"status": {"status_str": "error", "messages": [
        ["execution_start", {}], ["execution_interrupted", {"node_id": "sampler"}]]}})
    error = from_core(interrupted.code, interrupted.message, interrupted.fix)
    assert (error.status, error.code, error.headers()["x-should-retry"]) == (500, "interrupted", "false")
    comfy = outcome_of({"status": {"status_str": "error", "messages": [["execution_error", {
        "exception_message": "[lora_incompatible] the LoRA is for sdxl. Fix: pick a flux LoRA."}]]}})
    error = from_core(comfy.code, comfy.message, comfy.fix)
    assert (error.status, error.code, error.param) == (400, "lora_incompatible", "lora_settings")
    assert error.message == "the LoRA is for sdxl. Fix: pick a flux LoRA." and "x-should-retry" not in error.headers()


def test_a_client_that_goes_away_cancels_its_prompt(start_api) -> None:
    """Two requests on tiny flux/dev (50 steps): the second client hangs up while its prompt is
    queued or running; its prompt is dropped or interrupted, never finished."""
    api = start_api()
    service = api.server.context.service
    body = json.dumps({"prompt": "x", "model": "flux/dev", "size": "64x64", "seed": 1}).encode()
    head = (f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    first = threading.Thread(target=lambda: api.client().images.generate(prompt="x", model="flux/dev", size="64x64"))
    first.start()
    while service.current is None:  # the first prompt runs
        time.sleep(0.01)
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head + body)
        while service.queue_remaining() < 2:  # the second one is queued
            time.sleep(0.01)
        second_id = next(item.prompt_id for item in service.store.pending())
    first.join(120)
    while service.queue_remaining():
        time.sleep(0.05)
    history = http("GET", api.url + "/history").json()
    assert len(history) >= 1
    if second_id in history:  # it had started: interrupted, not finished
        assert history[second_id]["status"]["status_str"] == "error"


class FakeVision:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that captions (or fails with ``status``)."""

    def __init__(self, status: int = 200) -> None:
        import http.server

        self.requests: list[tuple[dict, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((body, self.headers.get("Authorization", "")))
                payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                               "content": "  an orange square\non grey  "}}]})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode() if status == 200 else b'{"error": "down"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("status", [200, 500])
def test_prompt_less_variations_are_captioned_or_go_on_without(start_api, monkeypatch, status: int) -> None:
    from diffusers_presets.runner.server.openai_caption import VisionSettings

    vision = FakeVision(status)
    monkeypatch.setenv("VISION_KEY_FOR_TEST", "vk-123")
    try:
        api = start_api(vision=VisionSettings("tiny-vision", vision.url + "/v1", "VISION_KEY_FOR_TEST"))
        raw = api.client().images.with_raw_response.create_variation(
            image=("in.png", _png(), "image/png"), model="sdxl/illustrious", extra_body={"seed": 4})
        reply, warning = raw.parse(), raw.headers.get("Warning")
    finally:
        vision.close()
    (body, authorization), = vision.requests
    assert body["model"] == "tiny-vision" and authorization == "Bearer vk-123"
    assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    (graph,) = _graphs(api)
    if status == 200:
        assert graph["sampler"]["inputs"]["prompt"] == "an orange square on grey" and warning is None
        assert reply.data[0].revised_prompt == "an orange square on grey"
    else:  # the variation still comes, without a prompt, and says why
        assert graph["sampler"]["inputs"]["prompt"] == "" and "captioning failed" in warning and "500" in warning
        assert reply.data[0].b64_json


def test_lora_settings_use_the_nodes_resolver_and_checks(start_api, tmp_path: Path, tiny_models) -> None:
    import torch

    from diffusers_presets.core.families import get_family
    from diffusers_presets.core.families.base import ModelSource
    from tests.lora.tiny_lora import make_tiny_lora

    loras = tmp_path / "models" / "loras"
    for family in ("flux", "sdxl"):
        pipe = get_family(family).load(ModelSource("folder", path=tiny_models[family]), torch.float32)
        make_tiny_lora(pipe, family, loras / "mine" / f"{family}.safetensors", seed=1)
    api = start_api()
    client = api.client()

    def pixels(**extra: Any) -> np.ndarray:
        reply = client.images.generate(prompt="a fox", model="gpt-image-1", extra_body={"seed": 9, **extra})
        return np.asarray(_image(base64.b64decode(reply.data[0].b64_json)), dtype=int)

    plain = pixels()
    by_name = pixels(lora_settings=[{"name": "mine/flux.safetensors", "weight": 1.0}])  # a loras-folder file
    by_path = pixels(lora_settings=[{"name": str(loras / "mine" / "flux.safetensors"), "weight": 1.0}])
    assert np.abs(by_name - plain).max() > 2 and np.array_equal(by_name, by_path)
    loaders = [graph["lora0"]["inputs"] for graph in _graphs(api) if "lora0" in graph]
    assert {(inputs["lora"], inputs["reference"]) for inputs in loaders} == {
        ("mine/flux.safetensors", ""), ("(use the reference below)", str(loras / "mine" / "flux.safetensors"))}
    with pytest.raises(openai.BadRequestError) as caught:  # an SDXL LoRA on a Flux preset
        pixels(lora_settings=[{"name": "mine/sdxl.safetensors"}])
    assert (caught.value.code, caught.value.param) == ("lora_incompatible", "lora_settings")


def test_interrupt_ends_a_request_with_a_500_that_is_not_retried(start_api) -> None:
    api = start_api()
    service = api.server.context.service
    caught: list[BaseException] = []

    def request() -> None:
        try:  # tiny flux/dev: 50 steps, long enough to be interrupted mid-sampling
            api.client(retries=2).images.generate(prompt="x", model="flux/dev", size="64x64")
        except openai.APIError as exc:
            caught.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    while service.current_node != "sampler":
        time.sleep(0.005)
    assert http("POST", api.url + "/interrupt", {}).status == 200
    thread.join(120)
    (error,) = caught
    assert isinstance(error, openai.InternalServerError) and error.code == "interrupted"
    assert error.response.headers["x-should-retry"] == "false"
    assert api.counts["/v1/images/generations"] == 1
