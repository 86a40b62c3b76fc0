"""Put a handle's LoRA stack onto a loaded pipeline, right before each generation.

Adapters are loaded once per pipeline (named from the file's sha256) from tensors read with
safetensors, then :func:`activate_loras` only calls ``set_adapters`` with the stack's weights:
reweighting, swapping or removing a LoRA never reloads the base pipeline. Adapters that left
the stack stay loaded but inactive (cheap to bring back), up to :data:`MAX_IDLE_ADAPTERS`.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import PresetsError
from ..handle import LoraSpec

log = logging.getLogger(__name__)

MAX_IDLE_ADAPTERS = 4
# Kohya/A1111 down weights and peft A weights: one per LoRA layer in the file.
_LAYER_KEY = re.compile(r"(lora_down|lora_A|lora\.down)(\.[^.]+)?\.weight$")


class _PipeState:
    """What this module did to one pipeline: adapters in least-recently-used order and whether
    LoRA is switched on. Kept so that a reweight is one ``set_adapters`` call and nothing more."""

    def __init__(self, pipe: Any) -> None:
        self.loaded: "OrderedDict[str, None]" = OrderedDict((name, None) for name in loaded_adapters(pipe))
        self.enabled = True


_states: "weakref.WeakKeyDictionary[Any, _PipeState]" = weakref.WeakKeyDictionary()


def loaded_adapters(pipe: Any) -> set[str]:
    return {name for names in pipe.get_list_adapters().values() for name in names}


def activate_loras(pipe: Any, family_name: str, loras: tuple[LoraSpec, ...]) -> None:
    """Make exactly ``loras`` active on ``pipe`` with their weights; no LoRA at all when the
    stack is empty (a loader removed from the graph has no effect on the next run)."""
    state = _states.get(pipe)
    if state is None:
        if not loras:
            return  # never had a LoRA from us: nothing to switch off
        state = _states[pipe] = _PipeState(pipe)
    for spec in loras:
        if spec.adapter_name not in state.loaded:
            load_adapter(pipe, family_name, spec)
        state.loaded[spec.adapter_name] = None
        state.loaded.move_to_end(spec.adapter_name)
    if not loras:
        if state.enabled and state.loaded:
            pipe.disable_lora()
            state.enabled = False
            log.info("no LoRA in the stack: adapters disabled")
        return
    if not state.enabled:
        pipe.enable_lora()
        state.enabled = True
    pipe.set_adapters([spec.adapter_name for spec in loras], [float(spec.weight) for spec in loras])
    if log.isEnabledFor(logging.INFO):
        log.info("LoRA stack: %s", ", ".join(f"{spec.path.name}@{spec.weight:g}" for spec in loras))
    _evict_idle(pipe, state, {spec.adapter_name for spec in loras})


def _evict_idle(pipe: Any, state: _PipeState, active: set[str]) -> None:
    idle = [name for name in state.loaded if name not in active]
    for name in idle[: max(0, len(idle) - MAX_IDLE_ADAPTERS)]:
        pipe.delete_adapters(name)
        del state.loaded[name]
        log.info("unloaded the idle LoRA adapter %s", name)


@contextmanager
def _captured_load_messages() -> Iterator[list[str]]:
    """diffusers and peft report unmatched keys as log warnings and ``warnings``; collect both
    instead of printing them (the caller logs what matters, in our own words)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    handler = Collect()
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft")]
    saved = [(logger.handlers, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(item.message) for item in caught)
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved):
            logger.handlers, logger.propagate = handlers, propagate


def _adapter_layers(pipe: Any, name: str) -> int:
    """How many layers of the pipeline carry the adapter ``name``."""
    import torch

    count = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            count += sum(1 for module in component.modules()
                         if name in (getattr(module, "lora_A", None) or {}))
    return count


def load_adapter(pipe: Any, family_name: str, spec: LoraSpec) -> None:
    """Load ``spec`` as an adapter (inactive until ``set_adapters``) and check that it landed:
    every layer matched, some matched (warning listing the unmatched), or none (error)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    label = f"LoRA {spec.path.name}"
    started = time.perf_counter()
    try:
        state = load_file(str(spec.path))  # safetensors only: nothing is ever unpickled
    except (OSError, SafetensorError) as exc:
        raise PresetsError("lora_invalid", f"{label} could not be read: {exc}.",
                           "download the LoRA again or pick another file.") from None
    expected = sum(1 for key in state if _LAYER_KEY.search(key))
    with _captured_load_messages() as messages:
        try:
            pipe.load_lora_weights(state, adapter_name=spec.adapter_name)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise PresetsError(
                "lora_invalid", f"{label} could not be loaded on the {family_name} pipeline: "
                f"{' '.join(str(exc).split())[:500]}",
                "LoHa/LoKr and other LyCORIS variants are not supported by diffusers; use a plain LoRA/LoCon.",
            ) from None
    layers = _adapter_layers(pipe, spec.adapter_name)
    # "No LoRA keys associated to <component>" only says the file has no layers for it: not a problem.
    unmatched = [m for m in messages if not m.startswith("No LoRA keys associated")
                 and re.search(r"unexpected|unsupported|not .*renamed", m, re.I)]
    if layers == 0:
        if spec.adapter_name in loaded_adapters(pipe):
            pipe.delete_adapters(spec.adapter_name)
        raise PresetsError("lora_incompatible",
                           f"none of the {expected} layers of {label} match the {family_name} pipeline"
                           f"{': ' + unmatched[0][:300] if unmatched else ''}.",
                           f"use a LoRA made for the {family_name} family.")
    seconds = time.perf_counter() - started
    log.info("%s: loaded as %s, %d layers matched of %d in the file (%.2f s)", label, spec.adapter_name,
             layers, expected, seconds)
    if layers < expected or unmatched:
        log.warning("%s is only partly applied: %d of %d layers matched%s", label, layers, expected,
                    "; " + " | ".join(m[:300] for m in unmatched) if unmatched else "")
