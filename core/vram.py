"""VRAM profiles: where the pipeline's weights live while it runs.

- ``full``: every component on the accelerator.
- ``balanced``: model CPU offload (one component on the accelerator at a time) + VAE tiling.
- ``lowvram``: group offload at leaf level, streamed (sequential CPU offload if group offload
  is unavailable) + VAE tiling.
- ``auto``: picks one of the above from free VRAM and the model's size.

:func:`plan_vram` is pure (unit-tested with made-up sizes); :func:`apply_vram_plan` applies
a plan to a loaded pipeline. Without an accelerator nothing is offloaded and the plan says so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

from .errors import PresetsError

log = logging.getLogger(__name__)

PROFILES = ("auto", "full", "balanced", "lowvram")
GIB = 1024**3
# Activations, attention buffers and the CUDA context need room beyond the weights.
HEADROOM = 1.25


@dataclass(frozen=True)
class VramPlan:
    requested: str
    applied: str  # "none" (CPU only), "full", "balanced" or "lowvram"
    device: str
    vae_tiling: bool
    reason: str

    def describe(self) -> str:
        return f"VRAM profile {self.requested} -> {self.applied} on {self.device}: {self.reason}"


def default_profile() -> str:
    """The profile used when no VramProfile node is in the graph (``VRAM_PROFILE``)."""
    value = os.environ.get("VRAM_PROFILE", "auto").strip().lower() or "auto"
    if value not in PROFILES:
        raise PresetsError("input_invalid", f"VRAM_PROFILE={value!r} is not a VRAM profile.",
                           f"set VRAM_PROFILE to one of: {', '.join(PROFILES)}.")
    return value


def plan_vram(profile: str, *, accelerator: Optional[str], free_vram: int, model_bytes: int,
              largest_component_bytes: int) -> VramPlan:
    """Decide how to place a model of ``model_bytes`` (largest single component
    ``largest_component_bytes``) given ``free_vram`` bytes on ``accelerator`` (None = CPU only)."""
    if profile not in PROFILES:
        raise PresetsError("input_invalid", f"'{profile}' is not a VRAM profile.", f"use one of: {', '.join(PROFILES)}.")
    if accelerator is None:
        return VramPlan(profile, "none", "cpu", False, "no accelerator found; running on the CPU without offload")
    gib = f"model {model_bytes / GIB:.1f} GiB, free VRAM {free_vram / GIB:.1f} GiB"
    if profile != "auto":
        tiling = profile != "full"
        return VramPlan(profile, profile, accelerator, tiling, f"requested explicitly ({gib})")
    if model_bytes * HEADROOM <= free_vram:
        return VramPlan(profile, "full", accelerator, False, f"the whole model fits ({gib})")
    if largest_component_bytes * HEADROOM <= free_vram:
        return VramPlan(profile, "balanced", accelerator, True,
                        f"the largest component ({largest_component_bytes / GIB:.1f} GiB) fits, the whole model does not ({gib})")
    return VramPlan(profile, "lowvram", accelerator, True,
                    f"even the largest component ({largest_component_bytes / GIB:.1f} GiB) does not fit ({gib})")


def detect_accelerator() -> tuple[Optional[str], int]:
    """(device name, free bytes) of the first accelerator, or (None, 0)."""
    import torch

    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return "cuda", int(free)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        # MPS shares system memory; report the recommended working set as "free".
        return "mps", int(torch.mps.recommended_max_memory())
    return None, 0


def component_sizes(pipe: Any) -> dict[str, int]:
    """Bytes of parameters and buffers per torch module of a pipeline."""
    import torch

    sizes = {}
    for name, component in getattr(pipe, "components", {}).items():
        if isinstance(component, torch.nn.Module):
            tensors = list(component.parameters()) + list(component.buffers())
            sizes[name] = sum(t.numel() * t.element_size() for t in tensors)
    return sizes


def apply_vram_plan(pipe: Any, profile: str) -> VramPlan:
    """Place ``pipe`` according to ``profile`` and log the plan applied."""
    accelerator, free = detect_accelerator()
    sizes = component_sizes(pipe)
    plan = plan_vram(profile, accelerator=accelerator, free_vram=free, model_bytes=sum(sizes.values()),
                     largest_component_bytes=max(sizes.values(), default=0))
    place_pipeline(pipe, plan)
    log.info(plan.describe())
    return plan


def replace_vram_plan(pipe: Any, profile: str) -> VramPlan:
    """Place an already placed ``pipe`` for another profile without reading weights again:
    undo the offload hooks and VAE tiling, gather the weights on the CPU, then apply the new
    plan. Every placement diffusers 0.42 offers here can be undone this way (accelerate's model
    offload hooks, group offloading at block and leaf level); sequential CPU offload, which we
    never apply, is the one that would need a reload."""
    unplace_pipeline(pipe)
    return apply_vram_plan(pipe, profile)


def unplace_pipeline(pipe: Any) -> None:
    """Remove what :func:`place_pipeline` did: offload hooks, VAE tiling, accelerator residence."""
    import torch
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.group_offloading import (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER,
                                                  _LAZY_PREFETCH_GROUP_OFFLOADING)

    if hasattr(pipe, "remove_all_hooks"):
        pipe.remove_all_hooks()  # accelerate's model CPU offload hooks
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        # diffusers has no public "disable group offload"; its own re-apply helper
        # (_maybe_remove_and_reapply_group_offloading) removes these hooks the same way.
        registry = HookRegistry.check_if_exists_or_initialize(component)
        for name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
            registry.remove_hook(name, recurse=True)
        component.to("cpu")
    if hasattr(getattr(pipe, "vae", None), "disable_tiling"):
        pipe.vae.disable_tiling()


def place_pipeline(pipe: Any, plan: VramPlan) -> None:
    """Apply ``plan`` to a loaded pipeline. Modular pipelines (Anima) have no pipeline-level
    offload methods, so their components get diffusers' group offloading one by one."""
    if plan.applied == "full":
        pipe.to(plan.device)
    elif plan.applied == "balanced":
        if hasattr(pipe, "enable_model_cpu_offload"):
            pipe.enable_model_cpu_offload(device=plan.device)
        else:
            _offload_each_component(pipe, plan.device, "block_level")
    elif plan.applied == "lowvram":
        if hasattr(pipe, "enable_group_offload"):
            import torch

            pipe.enable_group_offload(onload_device=torch.device(plan.device), offload_device=torch.device("cpu"),
                                      offload_type="leaf_level", use_stream=plan.device == "cuda")
        else:
            _offload_each_component(pipe, plan.device, "leaf_level")
    if plan.vae_tiling and hasattr(getattr(pipe, "vae", None), "enable_tiling"):
        pipe.vae.enable_tiling()


def _offload_each_component(pipe: Any, device: str, offload_type: str) -> None:
    import torch
    from diffusers.hooks import apply_group_offloading

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            apply_group_offloading(component, onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                   offload_type=offload_type, num_blocks_per_group=1 if offload_type == "block_level" else None,
                                   use_stream=device == "cuda")
