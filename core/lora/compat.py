"""Which model family a LoRA was made for, and whether it fits a preset's family.

Civitai's ``baseModel`` string is the authority; without it (a local file, a plain URL) the
safetensors header is read (metadata, then key names and shapes). Reading the header needs
no torch: it is 8 bytes of length and a JSON object.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path
from typing import Optional

from ..errors import PresetsError

log = logging.getLogger(__name__)

# Civitai baseModel -> architecture. Architectures that are also our family names load on that
# family; the rest exist so that the refusal can name what the LoRA is for.
BASE_MODEL_ARCHITECTURE = {
    **dict.fromkeys(("SD 1.4", "SD 1.5", "SD 1.5 LCM", "SD 1.5 Hyper"), "sd1"),
    **dict.fromkeys(("SD 2.0", "SD 2.0 768", "SD 2.1", "SD 2.1 768", "SD 2.1 Unclip"), "sd2"),
    **dict.fromkeys(("SDXL 0.9", "SDXL 1.0", "SDXL 1.0 LCM", "SDXL Lightning", "SDXL Hyper", "SDXL Turbo",
                     "Pony", "Illustrious", "NoobAI"), "sdxl"),
    **dict.fromkeys(("Flux.1 D", "Flux.1 S", "Flux.1 Krea", "Flux.1 Kontext"), "flux"),
    **dict.fromkeys(("Flux.2 D", "Flux.2 Klein 9B", "Flux.2 Klein 4B", "Flux.2 Klein 9B-base",
                     "Flux.2 Klein 4B-base"), "flux2"),
    "Chroma": "chroma",
    **dict.fromkeys(("ZImageTurbo", "ZImageBase"), "zimage"),
    "Anima": "anima",
    **dict.fromkeys(("SD 3", "SD 3.5", "SD 3.5 Large", "SD 3.5 Large Turbo", "SD 3.5 Medium"), "sd3"),
    **dict.fromkeys(("Qwen", "Qwen 2", "Qwen 3"), "qwen"),
    **dict.fromkeys(("AuraFlow", "Pony V7"), "auraflow"),
}
ARCHITECTURE_LABEL = {
    "sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x", "sdxl": "SDXL", "flux": "Flux.1",
    "flux2": "Flux.2", "chroma": "Chroma", "zimage": "Z-Image", "anima": "Anima", "sd3": "Stable Diffusion 3",
    "qwen": "Qwen-Image", "auraflow": "AuraFlow",
}
# (LoRA architecture, preset family) pairs that share layer names but not training: they load
# and often work, so they warn instead of failing. Civitai has no Flux <-> Chroma rule.
PARTIAL = {("flux", "chroma"), ("chroma", "flux")}
# Lineages inside one architecture (Civitai's "partial" cross-ecosystem rules), e.g. an
# Illustrious preset with a Pony LoRA: they load, but results differ, so they warn.
_LINEAGE = {"Pony": "pony", "Illustrious": "illustrious", "NoobAI": "noobai", "Flux.1 D": "dev",
            "Flux.1 S": "schnell", "Flux.1 Krea": "krea", "Flux.1 Kontext": "kontext", "ZImageTurbo": "turbo",
            "ZImageBase": "base"}
# A preset's ``lineage:`` field -> (its family, the Civitai base model it is).
PRESET_LINEAGES = {
    "sdxl": ("sdxl", "SDXL 1.0"), "pony": ("sdxl", "Pony"), "illustrious": ("sdxl", "Illustrious"),
    "noobai": ("sdxl", "NoobAI"), "flux-dev": ("flux", "Flux.1 D"), "flux-schnell": ("flux", "Flux.1 S"),
    "flux-krea": ("flux", "Flux.1 Krea"), "flux-kontext": ("flux", "Flux.1 Kontext"),
    "zimage-turbo": ("zimage", "ZImageTurbo"), "zimage-base": ("zimage", "ZImageBase"),
}

_MODELSPEC = (("stable-diffusion-xl", "sdxl"), ("stable-diffusion-v1", "sd1"), ("stable-diffusion-v2", "sd2"),
              ("stable-diffusion-v3", "sd3"), ("flux-1", "flux"), ("flux.1", "flux"), ("flux-2", "flux2"),
              ("flux.2", "flux2"), ("chroma", "chroma"), ("z-image", "zimage"), ("zimage", "zimage"),
              ("anima", "anima"), ("qwen-image", "qwen"))
_KOHYA_BASE = (("sdxl", "sdxl"), ("sd_v1", "sd1"), ("sd_v2", "sd2"), ("sd3", "sd3"), ("flux1", "flux"),
               ("flux2", "flux2"), ("chroma", "chroma"), ("lumina", "lumina"))
# Key-name patterns, most specific first.
_KEY_RULES = (
    (re.compile(r"distilled_guidance_layer"), "chroma"),
    (re.compile(r"double_blocks|single_blocks|single_transformer_blocks|\.attn\.add_q_proj"), "flux"),
    (re.compile(r"noise_refiner|context_refiner|layers[._]\d+[._]attention[._]"), "zimage"),
    (re.compile(r"llm_adapter|blocks[._]\d+[._](self|cross)_attn|transformer\.transformer_blocks\.\d+\.attn[12]\."),
     "anima"),
    (re.compile(r"lora_te2_|text_encoder_2\.|lora_te1_"), "sdxl"),
    (re.compile(r"lora_unet_|^unet\.|down_blocks|input_blocks"), "unet"),
)
# Cross-attention context width of SD-style UNets: tells SD1 / SD2 / SDXL LoRAs apart.
_CONTEXT_WIDTH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def architecture_of_base_model(base_model: str) -> Optional[str]:
    return BASE_MODEL_ARCHITECTURE.get(base_model.strip()) if base_model else None


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor dtypes/shapes and ``__metadata__``)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 2 <= length <= 100 * 1024 * 1024:
                raise ValueError(f"header length {length}")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        return header
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise PresetsError("lora_invalid", f"{path} is not a readable safetensors file ({exc}).",
                           "use a .safetensors LoRA file (download it again if it may be damaged).") from None


def detect_architecture(path: Path) -> Optional[str]:
    """The architecture a LoRA file was trained for, from its header; None when it cannot tell."""
    header = read_safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    spec = str(metadata.get("modelspec.architecture", "")).lower()
    for prefix, arch in _MODELSPEC:
        if spec.startswith(prefix):
            return arch
    kohya = str(metadata.get("ss_base_model_version", "")).lower()
    for prefix, arch in _KOHYA_BASE:
        if kohya.startswith(prefix):
            return arch
    keys = [key for key in header if key != "__metadata__"]
    for pattern, arch in _KEY_RULES:
        if any(pattern.search(key) for key in keys):
            return _unet_architecture(header, keys) if arch == "unet" else arch
    return None


def _unet_architecture(header: dict, keys: list[str]) -> str:
    """SD1, SD2 or SDXL from the input width of a cross-attention key projection. Unknown widths
    (tiny test models) count as SDXL, the only UNet family we run."""
    for key in keys:
        if re.search(r"attn2[._]to_k", key) and re.search(r"lora_down|lora_A|lora\.down", key):
            shape = header[key].get("shape") or []
            if len(shape) == 2:
                return _CONTEXT_WIDTH.get(shape[1], "sdxl")
    return "sdxl"


def _incompatible(label: str, arch: str, family: str, source: str) -> PresetsError:
    lora_side = ARCHITECTURE_LABEL.get(arch, arch)
    family_side = ARCHITECTURE_LABEL.get(family, family)
    return PresetsError("lora_incompatible",
                        f"{label} is a {lora_side} LoRA (from {source}), but the preset is a {family_side} ({family}) "
                        "model.", f"use a {family_side} LoRA with this preset, or a {lora_side} preset with this LoRA.")


def refuse_other_family(family: str, *, label: str, base_model: str) -> None:
    """Raise ``lora_incompatible`` when Civitai's ``base_model`` alone shows that the LoRA cannot
    load on ``family`` (checked before downloading); silent when it fits, partly fits or is
    unknown (then the file header decides after the download)."""
    arch = architecture_of_base_model(base_model)
    if arch is not None and arch != family and (arch, family) not in PARTIAL:
        raise _incompatible(label, arch, family, f"Civitai base model '{base_model}'")


def check_compatible(family: str, *, label: str, base_model: str = "", path: Optional[Path] = None,
                     preset_base_model: str = "") -> list[str]:
    """Raise ``lora_incompatible`` when the LoRA cannot fit ``family``; return warnings for a
    partial fit. ``base_model`` is Civitai's; without it the file header decides.
    ``preset_base_model`` is the Civitai base model of the preset (:func:`preset_base_model`)."""
    arch = architecture_of_base_model(base_model)
    source = f"Civitai base model '{base_model}'"
    if arch is None and path is not None:
        arch = detect_architecture(path)
        source = "its safetensors header"
    if arch is None:
        warning = (f"cannot tell which model {label} was made for ({f'base model {base_model!r}' if base_model else 'no metadata'}); "
                   f"loading it on {family} and checking which layers match")
        log.warning("%s", warning)
        return [warning]
    if arch == family:
        return _lineage_warnings(label, base_model, preset_base_model)
    if (arch, family) in PARTIAL:
        warning = f"{label} was made for {ARCHITECTURE_LABEL.get(arch, arch)} (from {source}) and is applied to a " \
                  f"{ARCHITECTURE_LABEL.get(family, family)} preset: the layers match, results may differ"
        log.warning("%s", warning)
        return [warning]
    raise _incompatible(label, arch, family, source)


def lineage_names(family: str) -> list[str]:
    """The values a ``lineage:`` field may take in a preset of ``family``."""
    return [name for name, (of, _) in PRESET_LINEAGES.items() if of == family]


def preset_base_model(lineage: Optional[str]) -> str:
    """The Civitai base model of a preset from its ``lineage:`` field (``illustrious`` ->
    ``Illustrious``); empty when the preset names none."""
    return PRESET_LINEAGES[lineage][1] if lineage in PRESET_LINEAGES else ""


def _lineage_warnings(label: str, base_model: str, preset_base_model: str) -> list[str]:
    lora_line, preset_line = _LINEAGE.get(base_model), _LINEAGE.get(preset_base_model)
    if base_model and preset_base_model and base_model != preset_base_model and (lora_line or preset_line):
        warning = f"{label} was trained on {base_model} and is applied to a {preset_base_model} model: it loads, " \
                  "but results may differ"
        log.warning("%s", warning)
        return [warning]
    return []
