"""The part of a family that is the same for every diffusers pipeline: loading through
:mod:`._loading`, sampler switching, building the call from :class:`SamplingParams`, step
reporting, error mapping and converting the output to ``[B,H,W,3]`` float32 in 0..1.

Family modules subclass :class:`DiffusersFamily`, set the class attributes and write
``build_tiny``; modular pipelines (Anima) override the few hooks that differ.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..errors import PresetsError, one_line
from ._loading import load_pipeline, quiet_progress_bars
from .base import Family, GenerationResult, ModelSource, SamplingParams, StepCallback

log = logging.getLogger(__name__)

# sampler name -> (diffusers scheduler class, config overrides)
SamplerTable = dict[str, tuple[str, dict[str, Any]]]

# Flow-matching families ship FlowMatchEulerDiscreteScheduler; "euler" names it explicitly.
FLOW_MATCH_SAMPLERS: SamplerTable = {"euler": ("FlowMatchEulerDiscreteScheduler", {})}

# Call arguments generate() sets itself; presets may not override them through `extra`.
_MANAGED_ARGS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "num_inference_steps",
        "guidance_scale",
        "width",
        "height",
        "generator",
        "num_images_per_prompt",
        "output_type",
        "return_dict",
        "callback_on_step_end",
        "callback_on_step_end_tensor_inputs",
        "clip_skip",
    }
)

# Attribute on a loaded pipeline: its schedulers by sampler name (None = the one it was loaded
# with), so switching samplers always starts from, and can return to, the original config.
_SCHEDULERS_ATTR = "_presets_schedulers"


@contextmanager
def seeded_build(seed: int = 0) -> Iterator[None]:
    """Seed torch while building tiny weights (so they are the same on every build) without
    disturbing the caller's global RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def images_to_bhwc(images: Any) -> Any:
    """``output_type="pt"`` images ([B,3,H,W], 0..1) -> float32 [B,H,W,3] in 0..1 on the CPU."""
    import torch

    return images.detach().permute(0, 2, 3, 1).to("cpu", torch.float32).clamp(0.0, 1.0).contiguous()


class DiffusersFamily(Family):
    """A family backed by one diffusers pipeline class."""

    samplers: SamplerTable = FLOW_MATCH_SAMPLERS
    # Files whose presence marks a complete diffusers folder (written by save_pretrained).
    index_files: tuple[str, ...] = ("model_index.json",)
    # (component, diffusers model class) for families whose single-file checkpoints hold only
    # the denoiser, the way Flux, Chroma and Z-Image fine-tunes ship; the other components
    # then come from the config. None: the checkpoint holds the whole pipeline (SDXL).
    single_file_denoiser: Optional[tuple[str, str]] = None
    tiny_save_kwargs: dict[str, Any] = {}

    # ---- loading -------------------------------------------------------------------------

    def pipeline_cls(self) -> Any:
        import diffusers

        return getattr(diffusers, self.pipeline_class)

    def load(self, source: ModelSource, dtype: Any) -> Any:
        # diffusers is imported only once the source checks passed (see _loading).
        def from_pretrained(name_or_path: str, **kwargs: Any) -> Any:
            return self.pipeline_cls().from_pretrained(name_or_path, **kwargs)

        def from_single_file(path: str, config: str, **kwargs: Any) -> Any:
            if self.single_file_denoiser is None:
                return self.pipeline_cls().from_single_file(path, config=config, **kwargs)
            import diffusers

            name, model_class = self.single_file_denoiser
            denoiser = getattr(diffusers, model_class).from_single_file(path, config=config, subfolder=name, **kwargs)
            return self.pipeline_cls().from_pretrained(config, **{name: denoiser}, **kwargs)

        return load_pipeline(
            self.name,
            source,
            dtype,
            from_pretrained=from_pretrained,
            from_single_file=from_single_file,
            index_files=self.index_files,
        )

    def build_tiny(self, dest: Path) -> None:
        quiet_progress_bars()
        with seeded_build():
            pipe = self.tiny_pipeline()
        pipe.save_pretrained(str(dest), **self.tiny_save_kwargs)
        log.debug("wrote tiny %s pipeline to %s", self.name, dest)

    def tiny_pipeline(self) -> Any:
        """Build the tiny random-weight pipeline in memory (torch is already seeded)."""
        raise NotImplementedError

    # ---- generation ----------------------------------------------------------------------

    def generate(self, pipe: Any, params: SamplingParams, on_step: StepCallback,
                 extra_kwargs: Optional[dict[str, Any]] = None) -> GenerationResult:
        self.check_size(params.width, params.height)
        self.apply_sampler(pipe, params.sampler)
        kwargs = self.call_kwargs(pipe, params)
        if extra_kwargs:
            kwargs.update(extra_kwargs)
            accepted = self.accepted_call_args(pipe)
            for name in ("width", "height"):  # SDXL img2img takes its size from the image
                if name not in accepted:
                    kwargs.pop(name)
        raised: list[BaseException] = []

        def report(step: int, total: int, latents: Any = None) -> None:
            try:
                on_step(step, total)
                if params.on_latents is not None and latents is not None:
                    params.on_latents(self.preview_latent(pipe, latents, params))
            except BaseException as exc:
                raised.append(exc)
                raise

        try:
            images = self.run(pipe, kwargs, params.steps, report)
        except PresetsError:
            raise
        except Exception as exc:
            if any(exc is r for r in raised):  # the caller's own exception (e.g. an interrupt)
                raise
            raise PresetsError(
                "generation_failed",
                f"the {self.name} pipeline failed: {one_line(exc)}",
                "check the preset's call arguments, size and steps; the log has the full traceback.",
            ) from exc
        return GenerationResult(images=images_to_bhwc(images), guidance_scale=self.used_guidance(pipe))

    def call_kwargs(self, pipe: Any, params: SamplingParams) -> dict[str, Any]:
        """Keyword arguments for the pipeline call, built from ``params``."""
        kwargs: dict[str, Any] = {}
        if params.conditioning:
            kwargs.update(params.conditioning)
        else:
            kwargs["prompt"] = params.prompt
            if params.negative_prompt:
                if self.supports_negative:
                    kwargs["negative_prompt"] = params.negative_prompt
                else:
                    log.warning("the %s family ignores negative prompts; dropping it", self.name)
        if params.clip_skip is not None:
            clip_skip = self.clip_skip_arg(pipe, params.clip_skip)
            if clip_skip is not None:
                kwargs["clip_skip"] = clip_skip
        kwargs.update(
            num_inference_steps=params.steps,
            guidance_scale=params.guidance_scale,
            width=params.width,
            height=params.height,
            # One generator per image, so image i can be reproduced alone with seed + i.
            generator=params.generators(),
            num_images_per_prompt=params.batch_size,
            output_type="pt",
        )
        kwargs.update(self.check_extra(pipe, params.extra))
        return kwargs

    def clip_skip_arg(self, pipe: Any, clip_skip: int) -> Optional[int]:
        """The pipeline's ``clip_skip`` argument for a preset's clip skip (None = leave it out)."""
        log.warning("the %s family has no clip skip; ignoring clip_skip=%s", self.name, clip_skip)
        return None

    def check_extra(self, pipe: Any, extra: dict[str, Any]) -> dict[str, Any]:
        """Reject preset ``call_args`` that clash with managed arguments or that the pipeline
        does not accept, so a typo is reported instead of silently ignored."""
        clashing = sorted(set(extra) & _MANAGED_ARGS)
        if clashing:
            raise PresetsError(
                "preset_invalid",
                f"call_args {', '.join(clashing)} are set by the preset's own fields for the {self.name} family.",
                "use the preset fields (prompt, steps, cfg, size, seed, sampler, clip_skip) instead.",
            )
        accepted = self.accepted_call_args(pipe)
        unknown = sorted(k for k in extra if k not in accepted)
        if unknown:
            raise PresetsError(
                "preset_invalid",
                f"the {self.pipeline_class} pipeline does not accept call_args {', '.join(unknown)}.",
                f"use only: {', '.join(sorted(accepted - _MANAGED_ARGS))}.",
            )
        return dict(extra)

    def accepted_call_args(self, pipe: Any) -> set[str]:
        """Names the pipeline's ``__call__`` accepts."""
        params = inspect.signature(type(pipe).__call__).parameters.values()
        return {p.name for p in params if p.kind is not p.VAR_KEYWORD and p.name != "self"}

    def run(self, pipe: Any, kwargs: dict[str, Any], steps: int, report: Callable[[int, int], None]) -> Any:
        """Call the pipeline, reporting each finished step; returns its images."""

        def on_step_end(pipeline: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
            report(step, getattr(pipeline, "_num_timesteps", None) or steps, callback_kwargs.get("latents"))
            return callback_kwargs

        return pipe(**kwargs, callback_on_step_end=on_step_end).images

    def preview_latent(self, pipe: Any, latents: Any, params: SamplingParams) -> Any:
        """The first image's step latent as (C, H, W): Flux-style pipelines pack latents into
        2x2 patch tokens, which their own ``_unpack_latents`` undoes."""
        first = latents[:1].detach()
        if first.ndim == 3 and hasattr(pipe, "_unpack_latents"):
            first = pipe._unpack_latents(first, params.height, params.width, pipe.vae_scale_factor)
        while first.ndim > 3:  # [1, C, H, W] (and video-style [1, C, 1, H, W]) -> [C, H, W]
            first = first[0] if first.shape[0] == 1 else first[:, 0]
        return first

    def used_guidance(self, pipe: Any) -> float:
        """The guidance scale the last call actually used, read back from the pipeline."""
        return float(pipe.guidance_scale)

    # ---- samplers ------------------------------------------------------------------------

    def apply_sampler(self, pipe: Any, sampler: Optional[str]) -> None:
        """Install the scheduler for ``sampler`` (None = the one the pipeline was loaded with).
        Schedulers are built once per pipeline and sampler, then reused."""
        schedulers = getattr(pipe, _SCHEDULERS_ATTR, None)
        if schedulers is None:
            schedulers = {None: pipe.scheduler}  # None = the scheduler the pipeline was loaded with
            setattr(pipe, _SCHEDULERS_ATTR, schedulers)
        if sampler not in schedulers:
            if sampler not in self.samplers:
                raise PresetsError(
                    "preset_invalid",
                    f"unknown sampler {sampler!r} for the {self.name} family.",
                    f"use one of: {', '.join(sorted(self.samplers))}, or leave it out for the model's default.",
                )
            default = schedulers[None]
            class_name, overrides = self.samplers[sampler]
            if type(default).__name__ == class_name and not overrides:
                schedulers[sampler] = default
            else:
                import diffusers

                schedulers[sampler] = getattr(diffusers, class_name).from_config(default.config, **overrides)
        if pipe.scheduler is not schedulers[sampler]:
            self.set_scheduler(pipe, schedulers[sampler])

    def set_scheduler(self, pipe: Any, scheduler: Any) -> None:
        pipe.scheduler = scheduler
