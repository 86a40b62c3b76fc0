"""The OpenAI-compatible Images API: ``/v1/images/generations``, ``/edits``, ``/variations``,
``/v1/models`` and the URL files.

Any OpenAI Images client (the ``openai`` SDK, Open WebUI, curl) gets images from the presets.
Each request becomes a node graph (PresetLoader → CivitaiLoraLoader… → FixedSampler, FluxRedux
or ImageEdit → ImagesApiOutput, with ImagesApiInput for uploads) queued on the same queue and
history as any prompt, through a :class:`Backend`: the runner server's
:class:`~.service.PromptService` here, ComfyUI's PromptQueue inside ComfyUI (:mod:`.openai_comfy`).
So progress events, ``/interrupt``, ``/queue`` and ``/history`` see these requests like any other
prompt. Steps, CFG and sampler stay the
presets'; see :mod:`.openai_params` for what a request may set.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ...nodes import api_io
from .openai_caption import CaptionFailed, caption
from .openai_errors import ApiError, from_core, from_validation
from .openai_files import MEDIA_TYPES, ImageFiles
from .openai_params import (EDIT_FIELDS, GENERATION_FIELDS, VARIATION_FIELDS, ApiOptions, ImageJob, check_fields,
                            parse_job, resolve_model)

if TYPE_CHECKING:
    from .app import ServerContext

log = logging.getLogger(__name__)

# Sent while a streamed request waits, so the client's read timeout (600 s in the SDK) never fires.
KEEPALIVE_S = 15.0
# How often a waiting request checks that its client is still connected.
WATCH_S = 0.1
# Uploaded images above this many pixels are refused before they are decoded (16.8 MP).
MAX_PIXELS = 4096 * 4096
# Families whose variations use Flux Redux (the others: img2img).
REDUX_FAMILIES = ("flux",)
_CORE_ERROR = re.compile(r"^\[([a-z_]+)\] (.*?)(?: Fix: (.*))?$", re.S)


@dataclass
class Outcome:
    """How a queued graph ended."""

    status: str  # success | error | interrupted
    code: str = ""
    message: str = ""
    fix: str = ""


class Backend(Protocol):
    """A prompt queue the API submits its graphs to."""

    async def submit(self, prompt: dict, prompt_id: str) -> None: ...  # raises ApiError
    async def wait(self, prompt_id: str) -> Outcome: ...
    def cancel(self, prompt_id: str) -> None: ...
    # Calls ``callback(latent, family)`` for each sampling step of the prompt (worker thread);
    # returns the function that stops it.
    def watch_steps(self, prompt_id: str, callback: Callable[[Any, str], None]) -> Callable[[], None]: ...


def outcome_of(entry: dict) -> Outcome:
    """A history entry (runner or ComfyUI) → :class:`Outcome`."""
    for event, data in reversed(entry.get("status", {}).get("messages", [])):
        if event == "execution_interrupted":
            return Outcome("interrupted", "interrupted", "The generation was interrupted (POST /interrupt).")
        if event == "execution_error":
            text = str(data.get("exception_message", ""))
            match = _CORE_ERROR.match(text)
            code = data.get("error_code") or (match.group(1) if match else "internal_error")
            message = match.group(2) if match else text
            fix = data.get("fix") or (match.group(3) if match and match.group(3) else "")
            return Outcome("error", code, message, fix)
    if entry.get("status", {}).get("status_str") == "success":
        return Outcome("success")
    return Outcome("error", "internal_error", "The generation failed; see the server log.")


class RunnerBackend:
    """The runner server's queue (:class:`~.service.PromptService`)."""

    def __init__(self, service: Any, max_queue: int = 0) -> None:
        self.service = service
        self.max_queue = max_queue

    async def submit(self, prompt: dict, prompt_id: str) -> None:
        if self.max_queue and self.service.queue_remaining() >= self.max_queue:
            raise ApiError(429, "queue_full", f"The queue is full ({self.max_queue} prompts waiting); try again "
                           "shortly.", retry=True, retry_after=1)
        submitted = await self.service.submit(prompt, prompt_id=prompt_id)
        if submitted.status != 200:
            raise from_validation(submitted.body)

    async def wait(self, prompt_id: str) -> Outcome:
        record = await self.service.wait(prompt_id)
        return outcome_of(record.entry)

    def cancel(self, prompt_id: str) -> None:
        if not self.service.delete_pending([prompt_id]):
            self.service.interrupt(prompt_id)

    def watch_steps(self, prompt_id: str, callback: Callable[[Any, str], None]) -> Callable[[], None]:
        def listener(step_prompt_id: str, latent: Any, family: str) -> None:
            if step_prompt_id == prompt_id:
                callback(latent, family)

        self.service.preview_listeners.append(listener)
        return lambda: self.service.preview_listeners.remove(listener)


class PartialImages:
    """``partial_images`` step previews, spread evenly over the steps: partial k goes out at the
    first step past (k + 1)/(count + 1) of them. Called on the worker thread; the images reach
    the event loop through :attr:`queue`."""

    def __init__(self, job: ImageJob, steps: int, loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.steps = max(1, steps)
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.seen = 0
        self.sent = 0

    def __call__(self, latent: Any, family: str) -> None:
        from ...core.previews import latent_to_image  # numpy and PIL: only when streaming

        self.seen += 1
        count = self.job.partial_images
        if self.sent >= count or self.seen * (count + 1) < (self.sent + 1) * self.steps:
            return
        picture = latent_to_image(latent, family).resize((self.job.width, self.job.height))
        data = api_io.encode_picture(picture, self.job.output_format, self.job.output_compression)
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (self.sent, data))
        self.sent += 1


# --- graphs --------------------------------------------------------------------------------------------
def _lora_nodes(graph: dict, link: list, loras: list[tuple[str, float]], choices: set[str]) -> list:
    """CivitaiLoraLoader nodes for ``lora_settings``: a catalog entry or local file by name,
    anything else (AIR, URL, path) as a reference; the node's resolver and checks apply."""
    from ...nodes.lora_loader import NO_CHOICE

    for index, (name, weight) in enumerate(loras):
        node_id = f"lora{index}"
        by_name = name in choices
        graph[node_id] = {"class_type": "CivitaiLoraLoader", "inputs": {
            "pipeline": link, "lora": name if by_name else NO_CHOICE, "reference": "" if by_name else name,
            "strength": weight, "trigger_weight": 0.5, "trigger_words": "", "use_catalog_strength": False}}
        link = [node_id, 0]
    return link


def _graph(job: ImageJob, request_id: str, lora_choices: set[str], sampler: str, inputs: dict[str, Any],
           uploads: bool) -> dict:
    """PresetLoader → CivitaiLoraLoader… → ``sampler`` → ImagesApiOutput (``uploads``: with
    ImagesApiInput bringing the request's images in as node ``input``)."""
    graph: dict[str, Any] = {"preset": {"class_type": "PresetLoader", "inputs": {"preset": job.preset_id,
                                                                                "model_override": ""}}}
    if uploads:
        graph["input"] = {"class_type": "ImagesApiInput", "inputs": {"request_id": request_id}}
    link = _lora_nodes(graph, ["preset", 0], job.loras, lora_choices)
    graph["sampler"] = {"class_type": sampler, "inputs": {
        "pipeline": link, "seed": job.seed, "width": job.width, "height": job.height, "batch_size": job.n,
        "prompt": job.prompt, **inputs}}
    graph["output"] = {"class_type": "ImagesApiOutput", "inputs": {
        "images": ["sampler", 0], "request_id": request_id, "output_format": job.output_format,
        "output_compression": job.output_compression}}
    return graph


def generation_graph(job: ImageJob, request_id: str, lora_choices: set[str]) -> dict:
    return _graph(job, request_id, lora_choices, "FixedSampler", {"negative_prompt": job.negative_prompt}, False)


def variation_graph(job: ImageJob, request_id: str, lora_choices: set[str]) -> dict:
    """Flux Redux on the uploaded image, steered by the optional prompt."""
    return _graph(job, request_id, lora_choices, "FluxRedux", {"reference": ["input", 0], "prompt_balance": 0.5},
                  True)


def edit_graph(job: ImageJob, request_id: str, lora_choices: set[str], with_mask: bool) -> dict:
    """img2img (inpainting with the mask) on the uploaded image."""
    inputs: dict[str, Any] = {"image": ["input", 0], "negative_prompt": job.negative_prompt, "strength": job.strength}
    if with_mask:
        inputs["mask"] = ["input", 1]
    return _graph(job, request_id, lora_choices, "ImageEdit", inputs, True)


def decode_upload(data: bytes, name: str, keep_alpha: bool = False) -> Any:
    """An uploaded file → an RGB (or RGBA) PIL image; 400 for what is not an image or is too large."""
    from PIL import Image, UnidentifiedImageError

    too_large = ApiError(400, "image_too_large", f"'{name}' has more than {MAX_PIXELS / 1e6:.1f} megapixels; scale it "
                         "down first.", name)
    try:
        picture = Image.open(io.BytesIO(data))
        width, height = picture.size  # from the header: nothing decoded yet
        if width * height > MAX_PIXELS:
            raise too_large
        picture.load()
        return picture.convert("RGBA" if keep_alpha else "RGB")
    except Image.DecompressionBombError:
        raise too_large from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ApiError(400, "invalid_image", f"'{name}' is not a PNG, JPEG or WebP image that can be read.",
                       name) from None


def _check_editable(family: str, inpaint: bool) -> None:
    from ...core.edit import check_editable
    from ...core.errors import PresetsError

    try:
        check_editable(family, inpaint)
    except PresetsError as exc:
        raise from_core(exc.code, exc.message, exc.fix) from None


def _lora_choices() -> set[str]:
    from ...nodes.lora_loader import lora_choices

    return set(lora_choices())


# --- the API -------------------------------------------------------------------------------------------
class ImagesApi:
    """The routes' state: options, the backend and the URL files."""

    def __init__(self, options: ApiOptions, backend: Backend, data_dir: Path) -> None:
        self.options = options
        self.backend = backend
        self.files = ImageFiles(options.data_dir or data_dir, options.image_ttl_s)

    # --- helpers ---------------------------------------------------------------------------------------
    def authorize(self, request: web.Request) -> None:
        key = self.options.api_key
        if not key:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode("utf-8", "surrogateescape"), key.encode()):
            raise ApiError(401, "invalid_api_key", "Incorrect API key provided. Send `Authorization: Bearer <key>` "
                           "with the key the server was started with (RUNNER_API_KEY).")

    def base_url(self, request: web.Request) -> str:
        return self.options.base_url.rstrip("/") or f"{request.scheme}://{request.host}"

    async def json_body(self, request: web.Request) -> dict:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(request) from None
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
        return body

    async def form_body(self, request: web.Request, allowed: frozenset[str]) -> tuple[dict, dict[str, list[bytes]]]:
        """A multipart form → (text fields, files by field name)."""
        if not request.content_type.startswith("multipart/form-data"):
            raise ApiError(400, "invalid_content_type", "This route takes multipart/form-data (the image as a file "
                           "part).")
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(request) from None
        except (ValueError, AssertionError, UnicodeDecodeError, HttpProcessingError):
            raise ApiError(400, "invalid_multipart", "The multipart/form-data body cannot be parsed.") from None
        fields: dict[str, Any] = {}
        files: dict[str, list[bytes]] = {}
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files.setdefault(name, []).append(value.file.read())
            else:
                fields[name] = value
        check_fields({**fields, **files}, allowed)
        return fields, files

    async def run_graph(self, request: web.Request, graph: dict, request_id: str) -> list[bytes]:
        """Queue ``graph``, wait for it, return the encoded images."""
        api_io.expect(request_id)
        try:
            await self.backend.submit(graph, request_id)
            outcome = await self.wait(request, request_id)
            images = api_io.take(request_id)
        finally:
            api_io.take(request_id)
        if outcome.status != "success":
            raise from_core(outcome.code, outcome.message, outcome.fix)
        if not images:
            raise ApiError(500, "internal_error", "The graph finished without images; see the server log.")
        return images

    async def wait(self, request: web.Request, request_id: str,
                   keepalive: Optional[web.StreamResponse] = None) -> Outcome:
        """The prompt's outcome. A client that goes away cancels its prompt (aiohttp does not
        cancel handlers on disconnect, so the connection is watched); ``keepalive`` gets an SSE
        comment every :data:`KEEPALIVE_S`."""
        waiting = asyncio.ensure_future(self.backend.wait(request_id))
        last_write = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=WATCH_S)
                if done:
                    return waiting.result()
                transport = request.transport
                if transport is None or transport.is_closing():
                    raise ConnectionResetError("the client went away")
                if keepalive is not None and time.monotonic() - last_write >= KEEPALIVE_S:
                    await keepalive.write(b": keep-alive\n\n")
                    last_write = time.monotonic()
        except (asyncio.CancelledError, ConnectionResetError):
            waiting.cancel()
            self.backend.cancel(request_id)
            log.info("images API request %s: the client went away; its prompt is cancelled", request_id)
            raise

    def image_items(self, request: web.Request, images: list[bytes], job: ImageJob) -> list[dict]:
        if job.response_format == "url":
            base = self.base_url(request)
            items = [{"url": f"{base}/v1/images/data/{self.files.put(blob, job.output_format)}"} for blob in images]
        else:
            items = [{"b64_json": base64.b64encode(blob).decode("ascii")} for blob in images]
        if job.revised_prompt:
            for item in items:
                item["revised_prompt"] = job.revised_prompt
        return items

    # --- handlers --------------------------------------------------------------------------------------
    async def generations(self, request: web.Request) -> web.StreamResponse:
        self.authorize(request)
        body = await self.json_body(request)
        loop = asyncio.get_running_loop()
        # Preset files and LoRA folders are read from disk: off the loop.
        job = await loop.run_in_executor(None, parse_job, self.options, body, GENERATION_FIELDS)
        choices = await loop.run_in_executor(None, _lora_choices) if job.loras else set()
        request_id = str(uuid.uuid4())
        log.info("images API %s: %s, %d image(s) %s, seed %d", request_id, job.preset_id, job.n, job.size, job.seed)
        graph = generation_graph(job, request_id, choices)
        if job.stream:
            return await self.stream(request, job, graph, request_id, "image_generation", job.steps)
        images = await self.run_graph(request, graph, request_id)
        return self.images_response(request, images, job, request_id)

    async def variations(self, request: web.Request) -> web.Response:
        """Flux presets: Flux Redux; other families: img2img of the image (``prompt`` and
        ``strength`` extensions)."""
        self.authorize(request)
        fields, files = await self.form_body(request, VARIATION_FIELDS)
        uploads = files.get("image") or []
        if len(uploads) != 1:
            raise ApiError(400, "missing_required_parameter", "'image' must be one image file part.", "image")
        loop = asyncio.get_running_loop()
        image = await loop.run_in_executor(None, decode_upload, uploads[0], "image")
        job = await loop.run_in_executor(
            None, lambda: parse_job(self.options, fields, VARIATION_FIELDS, False, image.size))
        family = await loop.run_in_executor(None, lambda: resolve_model(self.options, job.preset_id).family)
        choices = await loop.run_in_executor(None, _lora_choices) if job.loras else set()
        warning = ""
        if not job.prompt and self.options.vision.enabled:
            try:
                job.prompt = job.revised_prompt = await caption(self.options.vision, image)
                log.info("variation prompt from %s: %s", self.options.vision.model, job.prompt)
            except CaptionFailed as exc:
                log.warning("captioning failed, the variation goes on without a prompt: %s", exc)
                warning = f'199 diffusers-presets "captioning failed, no prompt used: {exc}"'
        request_id = str(uuid.uuid4())
        if family in REDUX_FAMILIES:
            graph = variation_graph(job, request_id, choices)
        else:
            _check_editable(family, False)
            graph = edit_graph(job, request_id, choices, with_mask=False)
        api_io.provide(request_id, image)
        images = await self.run_graph(request, graph, request_id)
        response = self.images_response(request, images, job, request_id)
        if warning:
            response.headers["Warning"] = warning
        return response

    async def edits(self, request: web.Request) -> web.StreamResponse:
        """img2img, or inpainting where the mask is transparent (OpenAI's rule)."""
        self.authorize(request)
        fields, files = await self.form_body(request, EDIT_FIELDS)
        uploads = (files.get("image") or []) + (files.get("image[]") or [])
        if not uploads:
            raise ApiError(400, "missing_required_parameter", "'image' (a file part) is required.", "image")
        masks = files.get("mask") or []
        if len(masks) > 1:
            raise ApiError(400, "invalid_value", "Send at most one 'mask' file.", "mask")
        if len(uploads) > 1 and masks:
            raise ApiError(400, "unsupported_value", "A mask goes with one image; send one 'image' to inpaint.", "mask")
        loop = asyncio.get_running_loop()
        if len(uploads) > 1:
            return await self.combine(request, fields, uploads)
        image = await loop.run_in_executor(None, decode_upload, uploads[0], "image")
        mask = await loop.run_in_executor(None, decode_upload, masks[0], "mask", True) if masks else None
        if mask is not None and mask.size != image.size:
            raise ApiError(400, "invalid_value", f"The mask is {mask.size[0]}x{mask.size[1]} but the image is "
                           f"{image.size[0]}x{image.size[1]}; they must match.", "mask")
        job = await loop.run_in_executor(None, lambda: parse_job(self.options, fields, EDIT_FIELDS, True, image.size))
        family = await loop.run_in_executor(None, lambda: resolve_model(self.options, job.preset_id).family)
        _check_editable(family, mask is not None)
        choices = await loop.run_in_executor(None, _lora_choices) if job.loras else set()
        request_id = str(uuid.uuid4())
        graph = edit_graph(job, request_id, choices, with_mask=mask is not None)
        api_io.provide(request_id, image, mask)
        if job.stream:
            from ...core.edit import edit_steps

            steps = edit_steps(job.steps, job.strength)
            return await self.stream(request, job, graph, request_id, "image_edit", steps)
        images = await self.run_graph(request, graph, request_id)
        return self.images_response(request, images, job, request_id)

    async def combine(self, request: web.Request, fields: dict, uploads: list[bytes]) -> web.StreamResponse:
        """Several images in one edit: on a Flux preset, Flux Redux makes a new image from all of
        them as references, steered by the prompt; other families have no such path."""
        loop = asyncio.get_running_loop()
        images = [await loop.run_in_executor(None, decode_upload, data, "image") for data in uploads]
        job = await loop.run_in_executor(None, lambda: parse_job(self.options, fields, EDIT_FIELDS, True,
                                                                  images[0].size))
        family = await loop.run_in_executor(None, lambda: resolve_model(self.options, job.preset_id).family)
        if family not in REDUX_FAMILIES:
            raise ApiError(400, "unsupported_value", f"Several images in one edit need a Flux preset (Flux Redux "
                           f"combines them); {job.preset_id} is a {family} preset. Send one image to edit it.",
                           "image")
        choices = await loop.run_in_executor(None, _lora_choices) if job.loras else set()
        request_id = str(uuid.uuid4())
        graph = variation_graph(job, request_id, choices)
        api_io.provide(request_id, images)
        if job.stream:
            return await self.stream(request, job, graph, request_id, "image_edit", job.steps)
        return self.images_response(request, await self.run_graph(request, graph, request_id), job, request_id)

    def images_response(self, request: web.Request, images: list[bytes], job: ImageJob,
                        request_id: str) -> web.Response:
        return web.json_response({
            "created": int(time.time()), "data": self.image_items(request, images, job), "background": "opaque",
            "output_format": job.output_format, "size": job.size}, headers={"x-request-id": request_id})

    async def stream(self, request: web.Request, job: ImageJob, graph: dict, request_id: str, kind: str,
                     steps: int) -> web.StreamResponse:
        """SSE: the request is queued first (so a refusal is a plain error response), then
        ``<kind>.partial_image`` events from the step latents (``partial_images`` of them, over
        ``steps`` steps) and keep-alive comments while it runs, one ``<kind>.completed`` event
        per image, and ``[DONE]``."""
        partials = PartialImages(job, steps, asyncio.get_running_loop()) if job.partial_images else None
        unwatch = self.backend.watch_steps(request_id, partials) if partials is not None else None
        api_io.expect(request_id)
        waiting: Optional[asyncio.Future] = None
        try:
            await self.backend.submit(graph, request_id)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                   "x-request-id": request_id})
            await response.prepare(request)
            waiting = asyncio.ensure_future(self.wait(request, request_id, keepalive=response))
            while partials is not None:
                getter = asyncio.ensure_future(partials.queue.get())
                done, _ = await asyncio.wait({waiting, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                await _event(response, self.partial_event(kind, job, *getter.result()))
            outcome = await waiting
            while partials is not None and not partials.queue.empty():  # sent just before the end
                await _event(response, self.partial_event(kind, job, *partials.queue.get_nowait()))
            images = api_io.take(request_id)
        finally:
            if waiting is not None and not waiting.done():
                waiting.cancel()
            if unwatch is not None:
                unwatch()
            api_io.take(request_id)
        if outcome.status != "success" or not images:
            error = from_core(outcome.code, outcome.message, outcome.fix) if outcome.status != "success" else \
                ApiError(500, "internal_error", "The graph finished without images; see the server log.")
            await _event(response, error.body())
        else:
            for blob in images:
                await _event(response, {
                    "type": f"{kind}.completed", "b64_json": base64.b64encode(blob).decode("ascii"),
                    "created_at": int(time.time()), "size": job.size, "quality": "auto", "background": "opaque",
                    "output_format": job.output_format,
                    "usage": {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
                              "output_tokens": 0, "total_tokens": 0}})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    def partial_event(kind: str, job: ImageJob, index: int, data: bytes) -> dict:
        return {"type": f"{kind}.partial_image", "b64_json": base64.b64encode(data).decode("ascii"),
                "partial_image_index": index, "created_at": int(time.time()), "size": job.size, "quality": "auto",
                "background": "opaque", "output_format": job.output_format}

    async def models(self, request: web.Request) -> web.Response:
        self.authorize(request)
        return web.json_response({"object": "list", "data": await self._model_list()})

    async def model(self, request: web.Request) -> web.Response:
        self.authorize(request)
        name = request.match_info["model"]
        for item in await self._model_list():
            if item["id"] == name:
                return web.json_response(item)
        await asyncio.get_running_loop().run_in_executor(None, resolve_model, self.options, name)  # the 404
        raise ApiError(404, "preset_not_found", f"The model '{name}' does not exist.", "model")

    async def _model_list(self) -> list[dict]:
        from ...core.presets import registry

        presets = await asyncio.get_running_loop().run_in_executor(None, registry)
        created = int(time.time())
        items = [{"id": preset.id, "object": "model", "created": created, "owned_by": "diffusers-presets"}
                 for preset in presets.all()]
        for alias in sorted(self.options.alias_map()):
            items.append({"id": alias, "object": "model", "created": created, "owned_by": "diffusers-presets"})
        return items

    async def data(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["file_id"]
        path = self.files.path(file_id)
        if path is None:
            raise ApiError(404, "file_not_found", "No such image: it never existed or it expired "
                           f"(images are kept {self.options.image_ttl_s:g} s).")
        return web.FileResponse(path, headers={"Content-Type": MEDIA_TYPES[path.suffix[1:]],
                                               "Cache-Control": "private, max-age=60"})


async def _event(response: web.StreamResponse, payload: dict) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())


def _too_large(request: web.Request) -> ApiError:
    return ApiError(413, "request_too_large", f"The body of {request.path} is larger than this server accepts (the "
                    "runner's --max-upload-size, ComfyUI's --max-upload-size).")


async def _unknown(request: web.Request) -> web.Response:
    raise ApiError(404, "unknown_url", f"Unrecognized request URL ({request.method} {request.path}).")


def _enveloped(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable:
    """Every failure of an API handler answers in OpenAI's envelope, never a bare 500."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as ex:
            return ex.response()
        except (asyncio.CancelledError, ConnectionResetError):  # the client went away: nobody to answer
            raise
        except Exception:  # noqa: BLE001 - the body must not leak a traceback
            log.exception("%s %s failed", request.method, request.path)
            return ApiError(500, "internal_error", "Internal server error; see the server log.").response()

    return wrapped


def build_routes(api: ImagesApi) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    routes.post("/v1/images/generations")(_enveloped(api.generations))
    routes.post("/v1/images/edits")(_enveloped(api.edits))
    routes.post("/v1/images/variations")(_enveloped(api.variations))
    routes.get("/v1/models")(_enveloped(api.models))
    routes.get("/v1/models/{model:.+}")(_enveloped(api.model))
    routes.get("/v1/images/data/{file_id}")(_enveloped(api.data))
    routes.route("*", "/v1/{tail:.*}")(_enveloped(_unknown))
    return routes


def openai_routes(context: "ServerContext") -> Callable[[web.Application], None]:
    """The runner server's table: the routes plus the URL files' sweeper."""
    settings = context.settings
    options = settings.openai if settings.openai is not None else ApiOptions.from_env()
    api = ImagesApi(options, RunnerBackend(context.service, options.max_queue),
                    Path(settings.user_directory) / "images_api")

    def mount(app: web.Application) -> None:
        app.add_routes(build_routes(api))

        async def start(_app: web.Application) -> None:
            api.files.start()

        async def stop(_app: web.Application) -> None:
            api.files.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)

    return mount
