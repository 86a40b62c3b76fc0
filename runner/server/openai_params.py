"""Request parsing of the Images API: OpenAI fields → a checked :class:`ImageJob`.

Everything a client can get wrong is answered here, before the queue, with a 400/404 in
OpenAI's envelope: unknown fields, values out of range, sizes the family cannot make, fixed
parameters, unmapped qualities. Multipart forms carry every value as a string (the SDK's
encoding), so numbers and booleans are parsed from text as well as from JSON.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ...core.errors import PresetsError
from ...nodes.api_io import FORMATS
from .openai_caption import VisionSettings
from .openai_errors import ApiError, from_core, invalid

MAX_N = 10
MAX_PROMPT = 32000
QUALITIES = ("auto", "standard", "hd", "low", "medium", "high")
# Qualities that mean "the model as named" (no switch of preset).
_NEUTRAL_QUALITIES = ("auto", "standard")
# The OpenAI model names clients send by default → the family whose default preset they get.
DEFAULT_ALIASES = {"gpt-image-1": "flux", "gpt-image-1.5": "flux", "dall-e-3": "flux", "dall-e-2": "sdxl"}
# quality → preset, per family (only presets this project ships).
DEFAULT_QUALITY_MAP = {"flux": {"low": "flux/schnell", "medium": "flux/schnell", "high": "flux/dev", "hd": "flux/dev"}}
# Parameters the presets fix; a request that sets them is refused, not silently ignored.
FIXED_PARAMETERS = ("guidance_scale", "num_inference_steps", "steps", "cfg", "cfg_scale", "sampler", "scheduler")
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_MAX_SEED = 2**64 - 1
_SHOWN = 60  # characters of a refused value quoted back

GENERATION_FIELDS = frozenset({
    "prompt", "model", "n", "size", "quality", "response_format", "style", "user", "background", "moderation",
    "output_format", "output_compression", "stream", "partial_images", "seed", "negative_prompt", "lora_settings",
})
EDIT_FIELDS = frozenset({
    "image", "image[]", "mask", "prompt", "model", "n", "size", "quality", "response_format", "user", "background",
    "input_fidelity", "output_format", "output_compression", "stream", "partial_images", "seed", "negative_prompt",
    "strength", "lora_settings",
})
VARIATION_FIELDS = frozenset({
    "image", "model", "n", "size", "response_format", "user", "prompt", "strength", "seed", "lora_settings",
    "output_format", "output_compression",
})


@dataclass
class ApiOptions:
    """How the Images API is configured (``serve`` flags and environment)."""

    aliases: dict[str, str] = field(default_factory=dict)  # model name → preset id or family
    quality_map: dict[str, dict[str, str]] = field(default_factory=lambda: {
        family: dict(qualities) for family, qualities in DEFAULT_QUALITY_MAP.items()})
    api_key: str = field(default="", repr=False)
    image_ttl_s: float = 3600.0
    base_url: str = ""
    data_dir: Optional[Path] = None
    # Requests beyond this many queued prompts answer 429 (0 = no limit).
    max_queue: int = 0
    # Captions for prompt-less variations (off unless configured).
    vision: VisionSettings = field(default_factory=VisionSettings)

    @classmethod
    def from_env(cls, **overrides: Any) -> "ApiOptions":
        options = cls(api_key=os.environ.get("RUNNER_API_KEY", ""), base_url=os.environ.get("BASE_URL", ""),
                      vision=VisionSettings.from_env())
        for key, value in overrides.items():
            setattr(options, key, value)
        return options

    def alias_map(self) -> dict[str, str]:
        return {**DEFAULT_ALIASES, **self.aliases}


@dataclass
class ImageJob:
    """One checked request."""

    preset_id: str
    prompt: str
    n: int
    width: int
    height: int
    seed: int
    model: str
    negative_prompt: str = ""
    quality: str = "auto"
    response_format: str = "b64_json"
    output_format: str = "png"
    output_compression: int = 100
    stream: bool = False
    partial_images: int = 0
    loras: list[tuple[str, float]] = field(default_factory=list)
    strength: float = 0.6
    revised_prompt: str = ""  # the caption used as the prompt of a prompt-less variation
    steps: int = 1  # the preset's

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def parse_assignment_map(items: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` items (serve flags) → a dict."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def parse_quality_map(items: list[str]) -> dict[str, dict[str, str]]:
    """``FAMILY:QUALITY=PRESET`` items → {family: {quality: preset}} over the default map."""
    out = {family: dict(qualities) for family, qualities in DEFAULT_QUALITY_MAP.items()}
    for key, preset in parse_assignment_map(items).items():
        family, sep, quality = key.partition(":")
        if not sep or quality not in QUALITIES:
            raise ValueError(f"expected FAMILY:QUALITY=PRESET with QUALITY one of {', '.join(QUALITIES)}, got {key!r}")
        out.setdefault(family, {})[quality] = preset
    return out


# --- values ----------------------------------------------------------------------------------------
def _shown(value: Any) -> str:
    """A client's value in an error message, cut short (a request may send megabytes)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    text = value.strip() if isinstance(value, str) else ""
    if re.fullmatch(r"-?\d{1,40}", text):
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        # Longer digit strings are out of every range here (and int() refuses over 4300 digits).
        code = "invalid_value" if re.fullmatch(r"-?\d+", text) else "invalid_type"
        raise invalid(code, f"'{name}' must be an integer from {low} to {high}, got {_shown(value)}.", name)
    if not low <= value <= high:
        raise invalid("invalid_value", f"'{name}' must be from {low} to {high}, got {_shown(value)}.", name)
    return value


def _float(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past a float's range
        number = None
    if number is None or number != number:
        raise invalid("invalid_type", f"'{name}' must be a number, got {_shown(value)}.", name)
    if not low <= number <= high:
        raise invalid("invalid_value", f"'{name}' must be from {low:g} to {high:g}, got {number:g}.", name)
    return number


def _bool(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool) and value is not None:
        raise invalid("invalid_type", f"'{name}' must be true or false, got {_shown(value)}.", name)
    return bool(value)


def _choice(body: dict, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise invalid("invalid_value", f"'{name}' must be one of {', '.join(allowed)}, got {_shown(value)}.", name)
    return value


def _string(body: dict, name: str, required: bool, limit: int = MAX_PROMPT) -> str:
    value = body.get(name)
    if value is None or (required and isinstance(value, str) and not value.strip()):
        if required:
            raise invalid("missing_required_parameter", f"'{name}' is required.", name)
        return ""
    if not isinstance(value, str):
        raise invalid("invalid_type", f"'{name}' must be a string.", name)
    if len(value) > limit:
        raise invalid("string_above_max_length", f"'{name}' is longer than {limit} characters.", name)
    return value


def _loras(value: Any) -> list[tuple[str, float]]:
    """``lora_settings``: a list of {name, weight} (a JSON string in multipart forms)."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise invalid("invalid_value", "'lora_settings' is not valid JSON.", "lora_settings") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid("invalid_type", "'lora_settings' must be a list of {\"name\": ..., \"weight\": ...} objects.",
                      "lora_settings")
    out = []
    for item in value:
        unknown = set(item) - {"name", "weight"}
        name = item.get("name")
        if unknown or not isinstance(name, str) or not name.strip():
            raise invalid("invalid_value", "each lora_settings entry needs a 'name' (a catalog LoRA, a Civitai AIR "
                          "or a file in the loras folder) and an optional 'weight' (0 to 2), nothing else.",
                          "lora_settings")
        out.append((name.strip(), _float(item, "weight", 1.0, 0.0, 2.0)))
    return out


# --- model, quality, size --------------------------------------------------------------------------
def _registry() -> Any:
    from ...core.presets import registry

    return registry()


def resolve_model(options: ApiOptions, model: Optional[str]) -> Any:
    """A model name (preset id, alias, or family name) → its preset; 404 ``model_not_found``."""
    presets = _registry()
    name = model or "gpt-image-1"
    target = options.alias_map().get(name, name)
    if target in presets.ids():
        return presets.get(target)
    defaults = [preset for preset in presets.all() if preset.family == target and preset.default]
    if defaults:
        return defaults[0]
    known = ", ".join(sorted(options.alias_map()) + presets.ids())
    raise ApiError(404, "preset_not_found", f"The model {_shown(name)} does not exist. Use one of: {known}.", "model")


def apply_quality(options: ApiOptions, preset: Any, quality: str) -> Any:
    if quality in _NEUTRAL_QUALITIES:
        return preset
    mapped = options.quality_map.get(preset.family, {}).get(quality)
    if mapped is None:
        offered = sorted(options.quality_map.get(preset.family, {}))
        hint = (f"qualities mapped for {preset.family}: {', '.join(offered)}" if offered
                else f"no quality is mapped for the {preset.family} family")
        raise invalid("unsupported_value", f"quality '{quality}' is not mapped to a preset for {preset.id} ({hint}; "
                      "'auto' and 'standard' use the model as named). Map one with "
                      f"`serve --quality-map {preset.family}:{quality}=PRESET`.", "quality")
    try:
        return _registry().get(mapped)
    except PresetsError as exc:
        raise from_core(exc.code, exc.message, exc.fix) from None


def resolve_size(preset: Any, size: Optional[str], auto: Optional[tuple[int, int]] = None) -> tuple[int, int]:
    """``WxH`` checked against the preset's and family's size rules; ``auto`` = ``auto`` (an
    input image's size) when it fits them, else the preset's default (after a ``tiny``
    override, the tiny model's)."""
    from ...core.families import get_family
    from ...core.host import get_host
    from ...core.sources import apply_override

    if (size is None or size == "auto") and auto is not None:
        try:
            return resolve_size(preset, "{}x{}".format(*auto))
        except ApiError:
            pass
    if size is None or size == "auto":
        override = get_host().model_overrides.get(preset.id, "")
        effective = apply_override(preset, override) if override == "tiny" else preset
        return effective.width, effective.height
    match = _SIZE.match(size) if isinstance(size, str) else None
    if not match:
        raise invalid("unsupported_size", f"size must be 'auto' or WIDTHxHEIGHT (e.g. 1024x1024), got {_shown(size)}.",
                      "size")
    width, height = int(match.group(1)), int(match.group(2))
    try:
        preset.size.check(preset.family, width, height)
        get_family(preset.family).check_size(width, height)
    except PresetsError as exc:
        raise from_core(exc.code, exc.message, exc.fix) from None
    return width, height


def check_fixed(preset: Any, body: dict) -> None:
    """400 ``parameter_fixed`` for steps/CFG/sampler in a request: presets fix them."""
    given = [name for name in FIXED_PARAMETERS if name in body]
    if not given:
        return
    raise invalid("parameter_fixed", f"{', '.join(given)} cannot be set per request: preset {preset.id} fixes steps "
                  f"= {preset.steps}, guidance_scale = {preset.cfg:g}, sampler = {preset.sampler_label}. For other "
                  f"values make a preset with the configurations API, POST /api/v1/models/{{model_id}}/configurations "
                  f"with a body like {{\"name\": \"my-preset\", \"steps\": 8, \"cfg_scale\": 2.0}} (GET "
                  f"/api/v1/models lists the model ids), or with `python -m runner presets add`; then pass its id as "
                  f"'model'.", given[0])


def check_fields(body: dict, allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed - set(FIXED_PARAMETERS))
    if unknown:
        raise invalid("unknown_parameter", f"Unrecognized request argument(s): {', '.join(unknown)}.", unknown[0])


def parse_job(options: ApiOptions, body: dict, allowed: frozenset[str], prompt_required: bool = True,
              auto_size: Optional[tuple[int, int]] = None) -> ImageJob:
    """Check the fields every route shares and resolve model, quality and size (``auto_size``:
    what ``size=auto`` means when it fits, e.g. the uploaded image's size)."""
    check_fields(body, allowed)
    prompt = _string(body, "prompt", prompt_required)
    quality = _choice(body, "quality", "auto", QUALITIES)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise invalid("invalid_type", "'model' must be a string.", "model")
    preset = apply_quality(options, resolve_model(options, model), quality)
    check_fixed(preset, body)
    if body.get("background") == "transparent":
        raise invalid("unsupported_value", "background 'transparent' is not supported: no model family here makes "
                      "images with an alpha channel. Use 'opaque' or 'auto'.", "background")
    _choice(body, "background", "auto", ("transparent", "opaque", "auto"))
    width, height = resolve_size(preset, body.get("size"), auto_size)
    output_format = _choice(body, "output_format", "png", FORMATS)
    compression = _int(body, "output_compression", 100, 0, 100)
    if "output_compression" in body and output_format == "png":
        raise invalid("unsupported_value", "output_compression applies to jpeg and webp only.", "output_compression")
    n = _int(body, "n", 1, 1, MAX_N)
    seed = _int(body, "seed", random.randrange(2**32), 0, _MAX_SEED - (n - 1))
    stream = _bool(body, "stream")
    partial_images = _int(body, "partial_images", 0, 0, 3)
    if not stream and "partial_images" in body and partial_images:
        raise invalid("unsupported_value", "partial_images needs stream=true.", "partial_images")
    return ImageJob(
        preset_id=preset.id, prompt=prompt, n=n, width=width, height=height, seed=seed, model=model or preset.id,
        negative_prompt=_string(body, "negative_prompt", False), quality=quality,
        response_format=_choice(body, "response_format", "b64_json", ("b64_json", "url")),
        output_format=output_format, output_compression=compression, stream=stream,
        partial_images=partial_images, loras=_loras(body.get("lora_settings")),
        strength=_float(body, "strength", 0.6, 0.01, 1.0), steps=preset.steps,
    )
