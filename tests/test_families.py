"""Model families on the tiny random-weight pipelines: loading, error mapping, generation
(shape, steps, guidance, seeds, batches, interrupts), samplers, Anima's CFG step counting,
Flux Redux, and the cheap import of ``core.families``."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch

from diffusers_presets.core.errors import Interrupted, PresetsError
from diffusers_presets.core.families import FAMILIES, REDUX_DIR, build_all_tiny, get_family
from diffusers_presets.core.families.anima import TINY_REPO_ID as TINY_ANIMA_REPO_ID
from diffusers_presets.core.families.base import GenerationResult, ModelSource, SamplingParams
from diffusers_presets.core.families.redux import load_redux
from tests.hub_cache import fake_hub_cache

ROOT = Path(__file__).resolve().parent.parent
NEGATIVE_FAMILIES = [name for name in FAMILIES if get_family(name).supports_negative]


@pytest.fixture(scope="session")
def pipes(tiny_models: dict[str, Path]) -> Callable[[str], Any]:
    """Each family's tiny pipeline, loaded once through ``Family.load`` from its folder."""
    loaded: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in loaded:
            source = ModelSource(kind="folder", path=tiny_models[name])
            loaded[name] = get_family(name).load(source, torch.float32)
        return loaded[name]

    return get


def params(**overrides: Any) -> SamplingParams:
    base = SamplingParams(
        prompt="a red cat on a blue chair",
        negative_prompt="blurry",
        steps=2,
        guidance_scale=3.5,
        width=64,
        height=64,
        batch_size=1,
        seed=7,
    )
    return replace(base, **overrides)


def run(
    name: str, pipes: Callable[[str], Any], on_step: Optional[Callable[[int, int], None]] = None, **overrides: Any
) -> GenerationResult:
    return get_family(name).generate(pipes(name), params(**overrides), on_step or (lambda i, n: None))


def differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) > 1e-3


# ---- registry and import -------------------------------------------------------------------


def test_unknown_family_lists_known_ones() -> None:
    with pytest.raises(PresetsError) as err:
        get_family("sd15")
    assert err.value.code == "preset_invalid"
    for name in ("sdxl", "chroma", "flux", "zimage", "anima"):
        assert name in err.value.fix


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import runner; runner.load_pack(); "
        "import diffusers_presets.core.families as f; f.get_family('sdxl'); f.get_family('anima'); "
        "print([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- tiny models ---------------------------------------------------------------------------


def test_build_all_tiny_is_complete_idempotent_and_deterministic(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    assert set(tiny_models) == {*FAMILIES, REDUX_DIR}
    index = tiny_models["sdxl"] / "model_index.json"
    stamp = index.stat().st_mtime_ns
    again = build_all_tiny(tiny_models["sdxl"].parent)
    assert again == tiny_models
    assert index.stat().st_mtime_ns == stamp  # complete folders are left alone
    assert not [p for p in tiny_models["sdxl"].parent.iterdir() if p.name.startswith(".")]  # no temp leftovers

    # A half-written folder is replaced, and the same seed gives the same weights.
    (tmp_path / "flux").mkdir()
    (tmp_path / "flux" / "junk").write_text("interrupted build")
    rebuilt = build_all_tiny(tmp_path)
    assert not (rebuilt["flux"] / "junk").exists()
    for name, sub in (("flux", "transformer"), ("anima", "transformer"), (REDUX_DIR, "image_embedder")):
        [weights] = (tiny_models[name] / sub).glob("*.safetensors")
        assert (rebuilt[name] / sub / weights.name).read_bytes() == weights.read_bytes()


def test_a_tiny_preset_builds_and_announces_only_its_own_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from diffusers_presets.core import sources

    monkeypatch.setenv("DIFFUSERS_PRESETS_CACHE", str(tmp_path))
    with caplog.at_level(logging.INFO, logger=sources.log.name):
        folder = sources.ensure_tiny_model("sdxl", "demo/sdxl")
    assert folder == tmp_path / "tiny-models" / "sdxl" and (folder / "model_index.json").is_file()
    assert [p.name for p in (tmp_path / "tiny-models").iterdir()] == ["sdxl"]
    (announcement,) = [r.getMessage() for r in caplog.records if r.name == sources.log.name]
    assert announcement == (f"demo/sdxl runs on the tiny random-weight sdxl model: building it once in {folder} "
                            "(a few seconds)")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=sources.log.name):
        assert sources.ensure_tiny_model("sdxl", "demo/sdxl") == folder
    assert not [r for r in caplog.records if r.name == sources.log.name]  # built already: nothing to say


def test_tiny_models_in_an_unwritable_cache_are_model_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers_presets.core import sources

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("DIFFUSERS_PRESETS_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(PresetsError, match="the tiny flux model cannot be built") as info:
        sources.ensure_tiny_model("flux", "demo/flux")
    assert info.value.code == "model_not_found" and "DIFFUSERS_PRESETS_CACHE" in info.value.fix


# ---- generation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_generate_shape_steps_and_guidance(name: str, pipes: Callable[[str], Any]) -> None:
    steps: list[tuple[int, int]] = []
    result = run(name, pipes, lambda i, n: steps.append((i, n)))
    images = result.images
    assert images.shape == (1, 64, 64, 3)
    assert images.dtype == torch.float32 and images.device.type == "cpu"
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert not torch.isnan(images).any()
    assert steps == [(0, 2), (1, 2)]
    assert result.guidance_scale == 3.5


@pytest.mark.parametrize("name", FAMILIES)
def test_seed_and_prompt_decide_the_image(name: str, pipes: Callable[[str], Any]) -> None:
    first = run(name, pipes).images
    assert torch.equal(first, run(name, pipes).images)
    assert differ(first, run(name, pipes, seed=8).images)
    assert differ(first, run(name, pipes, prompt="a green dog under a tree").images)


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_uses_one_seed_per_image(name: str, pipes: Callable[[str], Any]) -> None:
    batch = run(name, pipes, batch_size=2).images
    assert batch.shape == (2, 64, 64, 3)
    # Image i of a batch is the single image of seed + i (batched matmuls round differently).
    assert torch.allclose(batch[1], run(name, pipes, seed=8).images[0], atol=1e-2)


@pytest.mark.parametrize("name", NEGATIVE_FAMILIES)
def test_negative_prompt_is_used(name: str, pipes: Callable[[str], Any]) -> None:
    assert differ(run(name, pipes).images, run(name, pipes, negative_prompt="a purple square").images)


def test_flux_ignores_negative_prompt(pipes: Callable[[str], Any]) -> None:
    assert not get_family("flux").supports_negative
    assert torch.equal(run("flux", pipes).images, run("flux", pipes, negative_prompt="a purple square").images)


@pytest.mark.parametrize("name", FAMILIES)
def test_interrupt_propagates_and_next_call_works(name: str, pipes: Callable[[str], Any]) -> None:
    def interrupt(i: int, n: int) -> None:
        raise Interrupted()

    with pytest.raises(Interrupted):
        run(name, pipes, interrupt)
    steps: list[tuple[int, int]] = []
    after = run(name, pipes, lambda i, n: steps.append((i, n)), seed=11)
    assert steps == [(0, 2), (1, 2)]
    assert torch.equal(after.images, run(name, pipes, seed=11).images)


def test_pipeline_errors_become_generation_failed(pipes: Callable[[str], Any]) -> None:
    with pytest.raises(PresetsError) as err:
        run("flux", pipes, extra={"latents": torch.zeros(1, 2, 3)})  # not a packed latent
    assert err.value.code == "generation_failed"


def test_call_args_are_passed_and_checked(pipes: Callable[[str], Any]) -> None:
    short = run("flux", pipes, prompt="a red cat " * 20, extra={"max_sequence_length": 8}).images
    assert differ(short, run("flux", pipes, prompt="a red cat " * 20).images)
    for extra in ({"max_sequence_lenght": 8}, {"generator": None}):
        with pytest.raises(PresetsError) as err:
            run("flux", pipes, extra=extra)
        assert err.value.code == "preset_invalid"


def test_size_rule_is_checked(pipes: Callable[[str], Any]) -> None:
    with pytest.raises(PresetsError) as err:
        run("zimage", pipes, width=72)
    assert err.value.code == "size_invalid"
    assert run("sdxl", pipes, width=72).images.shape == (1, 64, 72, 3)


# ---- SDXL samplers and clip skip -----------------------------------------------------------


def test_sdxl_samplers_switch_and_switch_back(pipes: Callable[[str], Any]) -> None:
    pipe = pipes("sdxl")
    default = run("sdxl", pipes).images
    seen = set()
    for sampler in ("euler_a", "euler", "dpmpp_2m", "ddim"):
        steps: list[tuple[int, int]] = []
        images = run("sdxl", pipes, lambda i, n: steps.append((i, n)), sampler=sampler).images
        assert steps == [(0, 2), (1, 2)] and images.shape == (1, 64, 64, 3)
        seen.add(type(pipe.scheduler).__name__)
    assert seen == {
        "EulerAncestralDiscreteScheduler",
        "EulerDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "DDIMScheduler",
    }
    assert torch.equal(run("sdxl", pipes).images, default)
    with pytest.raises(PresetsError) as err:
        run("sdxl", pipes, sampler="lms")
    assert err.value.code == "preset_invalid"


def test_flow_families_accept_euler_only(pipes: Callable[[str], Any]) -> None:
    assert torch.equal(run("flux", pipes, sampler="euler").images, run("flux", pipes).images)
    with pytest.raises(PresetsError) as err:
        run("flux", pipes, sampler="ddim")
    assert err.value.code == "preset_invalid"


def test_sdxl_clip_skip_counts_like_a1111(pipes: Callable[[str], Any]) -> None:
    default = run("sdxl", pipes).images
    # "Clip skip 2" is the penultimate layer, which SDXL uses anyway.
    assert torch.equal(run("sdxl", pipes, clip_skip=2).images, default)
    assert differ(run("sdxl", pipes, clip_skip=3).images, default)
    with pytest.raises(PresetsError) as err:
        run("sdxl", pipes, clip_skip=4)  # the tiny CLIP has 2 layers
    assert err.value.code == "preset_invalid"


# ---- Anima ---------------------------------------------------------------------------------


@pytest.mark.parametrize("guidance, calls_per_step", [(3.5, 2), (1.0, 1)])
def test_anima_counts_steps_not_transformer_calls(
    pipes: Callable[[str], Any], guidance: float, calls_per_step: int
) -> None:
    pipe = pipes("anima")
    calls: list[int] = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, args: calls.append(1))
    steps: list[tuple[int, int]] = []
    try:
        result = run("anima", pipes, lambda i, n: steps.append((i, n)), steps=3, guidance_scale=guidance)
    finally:
        handle.remove()
    assert len(calls) == 3 * calls_per_step  # CFG runs the transformer per condition
    assert steps == [(0, 3), (1, 3), (2, 3)]
    assert result.guidance_scale == guidance == pipe.guider.guidance_scale
    assert not pipe.transformer._forward_hooks  # our step hook is gone


# ---- Flux Redux ----------------------------------------------------------------------------


def test_redux_embeds_drive_tiny_flux(tiny_models: dict[str, Path], pipes: Callable[[str], Any]) -> None:
    from PIL import Image

    flux = pipes("flux")
    redux = load_redux(ModelSource(kind="folder", path=tiny_models[REDUX_DIR]), torch.float32, flux_pipe=flux)
    embeds = []
    for seed in (1, 2):
        pixels = torch.Generator().manual_seed(seed)
        image = Image.fromarray((torch.rand(64, 64, 3, generator=pixels) * 255).byte().numpy())
        out = redux(image=image, prompt="")
        embeds.append({"prompt_embeds": out.prompt_embeds, "pooled_prompt_embeds": out.pooled_prompt_embeds})
    first = run("flux", pipes, conditioning=embeds[0]).images
    assert first.shape == (1, 64, 64, 3)
    assert differ(first, run("flux", pipes, conditioning=embeds[1]).images)


# ---- loading ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sdxl", "anima"])
def test_load_applies_dtype(name: str, tiny_models: dict[str, Path]) -> None:
    pipe = get_family(name).load(ModelSource(kind="folder", path=tiny_models[name]), torch.bfloat16)
    denoiser = pipe.unet if name == "sdxl" else pipe.transformer
    assert denoiser.dtype == torch.bfloat16
    images = get_family(name).generate(pipe, params(), lambda i, n: None).images
    assert images.dtype == torch.float32 and images.shape == (1, 64, 64, 3)


# ---- loading errors ------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_missing_folder_is_model_not_found(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PresetsError) as err:
        get_family(name).load(ModelSource(kind="folder", path=missing), torch.float32)
    assert err.value.code == "model_not_found"
    assert str(missing) in err.value.message
    assert "tiny-models" in err.value.fix


def test_broken_folder_is_model_load_failed(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    not_diffusers = tmp_path / "empty"
    not_diffusers.mkdir()
    with pytest.raises(PresetsError) as err:
        get_family("sdxl").load(ModelSource(kind="folder", path=not_diffusers), torch.float32)
    assert err.value.code == "model_load_failed"

    broken = tmp_path / "sdxl"
    shutil.copytree(tiny_models["sdxl"], broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    with pytest.raises(PresetsError) as err:
        get_family("sdxl").load(ModelSource(kind="folder", path=broken), torch.float32)
    assert err.value.code == "model_load_failed"
    assert str(broken) in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("name", ["sdxl", "anima"])
def test_uncached_hub_repo_fails_fast(name: str) -> None:
    source = ModelSource(kind="hub", repo_id="diffusers-presets-test/not-a-repo", revision="v1")
    started = time.perf_counter()
    with pytest.raises(PresetsError) as err:
        get_family(name).load(source, torch.float32)
    assert time.perf_counter() - started < 5
    assert err.value.code == "model_not_found"
    assert "diffusers-presets-test/not-a-repo@v1" in err.value.message
    assert "hf download diffusers-presets-test/not-a-repo --revision v1" in err.value.fix
    assert "DIFFUSERS_PRESETS_ALLOW_DOWNLOAD=1" in err.value.fix


@pytest.mark.parametrize("name", ["zimage", "anima"])
@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")  # inside diffusers
def test_cached_hub_repo_loads_offline(
    name: str,
    tiny_models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pipes: Callable[[str], Any],
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    # The tiny Anima's modular index names its components' repo, as a pushed one does.
    repo_id = TINY_ANIMA_REPO_ID if name == "anima" else f"tiny/{name}"
    fake_hub_cache(tmp_path, repo_id, tiny_models[name])
    pipe = get_family(name).load(ModelSource(kind="hub", repo_id=repo_id), torch.float32)
    images = get_family(name).generate(pipe, params(), lambda i, n: None).images
    assert torch.equal(images, run(name, pipes).images)


@pytest.mark.parametrize("name", ["flux", "chroma", "zimage"])
def test_single_file_denoiser_with_config(
    name: str, tiny_models: dict[str, Path], tmp_path: Path, pipes: Callable[[str], Any]
) -> None:
    from safetensors.torch import save_file

    # A fine-tune shipped as one transformer file; everything else comes from the config.
    checkpoint = tmp_path / f"{name}-finetune.safetensors"
    save_file({k: v.contiguous() for k, v in pipes(name).transformer.state_dict().items()}, str(checkpoint))
    source = ModelSource(kind="single_file", path=checkpoint, config=str(tiny_models[name]))
    pipe = get_family(name).load(source, torch.float32)
    images = get_family(name).generate(pipe, params(), lambda i, n: None).images
    assert torch.equal(images, run(name, pipes).images)


def test_single_file_sources(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    # A tiny SDXL checkpoint in the original (SGM) layout needs a diffusers->SGM converter
    # that diffusers does not ship, so only the error paths are covered for SDXL.
    sdxl = get_family("sdxl")
    checkpoint = tmp_path / "model.safetensors"
    with pytest.raises(PresetsError) as err:
        sdxl.load(ModelSource(kind="single_file", path=checkpoint, config=str(tiny_models["sdxl"])), torch.float32)
    assert err.value.code == "model_not_found" and str(checkpoint) in err.value.message

    checkpoint.write_bytes(b"")
    with pytest.raises(PresetsError) as err:
        sdxl.load(ModelSource(kind="single_file", path=checkpoint), torch.float32)
    assert err.value.code == "preset_invalid"  # no config: diffusers would go online
    with pytest.raises(PresetsError) as err:
        sdxl.load(ModelSource(kind="single_file", path=checkpoint, config="nobody/uncached"), torch.float32)
    assert err.value.code == "model_not_found" and "nobody/uncached" in err.value.message
    with pytest.raises(PresetsError) as err:
        sdxl.load(ModelSource(kind="single_file", path=checkpoint, config=str(tiny_models["sdxl"])), torch.float32)
    assert err.value.code == "model_load_failed"
    with pytest.raises(PresetsError) as err:
        get_family("anima").load(ModelSource(kind="single_file", path=checkpoint, config="x"), torch.float32)
    assert err.value.code == "preset_invalid"
