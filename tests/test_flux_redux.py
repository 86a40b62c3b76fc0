"""FluxRedux on the tiny Flux + tiny Redux models: mixing, balance, sharing, errors, progress."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from diffusers_presets.core.errors import Interrupted, PresetsError
from diffusers_presets.core.host import RunContext, run_scope
from diffusers_presets.core.images import to_pil_images
from diffusers_presets.core.redux import REDUX_TEXT_TOKENS, redux_conditioning, redux_pipeline, redux_source
from diffusers_presets.nodes.fixed_sampler import FixedSampler
from diffusers_presets.nodes.flux_redux import FluxRedux
from diffusers_presets.nodes.preset_loader import PresetLoader
from diffusers_presets.runner import cli, core_nodes

PRESET = "flux/schnell"  # 4 steps: the same Flux + Redux path as flux/dev at a fraction of the time
STEPS = 4
PROMPT = "a red fox in the snow"
EXAMPLES = Path(__file__).resolve().parent.parent / "example_workflows"


def picture(seed: int, size: int = 48) -> torch.Tensor:
    return torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(seed))


def handle(preset: str = PRESET):
    return PresetLoader().load(preset, "tiny")[0]


def redux(pipeline=None, reference=None, *, seed: int = 1, prompt: str = "", balance: float = 0.5,
          reference_2=None, weight_2: float = 1.0, batch: int = 1) -> torch.Tensor:
    pipeline = pipeline or handle()
    reference = picture(0) if reference is None else reference
    (images,) = FluxRedux().generate(pipeline, reference, seed, 64, 64, batch, prompt, balance, reference_2, weight_2)
    return images


def test_references_and_seeds(host, tiny_models, fresh_cache) -> None:
    first = redux(seed=3)
    assert first.shape == (1, 64, 64, 3) and first.dtype == torch.float32
    assert torch.equal(first, redux(seed=3))
    assert not torch.equal(first, redux(seed=4))
    other = redux(reference=picture(1), seed=3)
    assert (first - other).abs().max() > 1e-4
    batch = redux(seed=3, batch=2)
    assert batch.shape == (2, 64, 64, 3)
    assert torch.allclose(batch[0], first[0], atol=2e-3)  # image i of a batch uses seed + i


def test_matches_prior_redux_plus_flux_pipeline_called_directly(host, tiny_models, fresh_cache) -> None:
    from diffusers import FluxPipeline, FluxPriorReduxPipeline

    pipeline = handle()
    ours = redux(pipeline, seed=5)
    flux = FluxPipeline.from_pretrained(str(tiny_models["flux"]))
    shared = {name: getattr(flux, name) for name in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")}
    prior = FluxPriorReduxPipeline.from_pretrained(str(tiny_models["flux_redux"]), **shared)
    embeds = prior(image=to_pil_images(picture(0)), prompt="")
    direct = flux(prompt_embeds=embeds.prompt_embeds, pooled_prompt_embeds=embeds.pooled_prompt_embeds,
                  num_inference_steps=STEPS, guidance_scale=pipeline.preset.cfg, width=64, height=64,
                  generator=[torch.Generator("cpu").manual_seed(5)], output_type="pt",
                  **pipeline.preset.call_args).images
    assert torch.allclose(ours, direct.permute(0, 2, 3, 1).clamp(0, 1), atol=1e-6)


def test_second_reference_weight(host, tiny_models, fresh_cache) -> None:
    alone = redux(reference=picture(0))
    assert torch.equal(alone, redux(reference=picture(0), reference_2=picture(1), weight_2=0.0))
    mixed = redux(reference=picture(0), reference_2=picture(1), weight_2=1.0)
    assert not torch.equal(alone, mixed)
    # A batch of two is two references of weight 1: the same mix as reference + reference_2 at 1.
    as_batch = redux(reference=torch.cat([picture(0), picture(1)]))
    assert torch.allclose(as_batch, mixed, atol=1e-5)


def test_prompt_balance(host, tiny_models, fresh_cache) -> None:
    pipeline = handle()
    no_prompt = redux(pipeline)
    # Balance 0 ignores the prompt entirely.
    assert torch.equal(redux(pipeline, prompt=PROMPT, balance=0.0), redux(pipeline, balance=0.0))
    # Towards the prompt, the images move away from the prompt-free Redux result and
    # towards the text-only result of the same prompt.
    (text_only,) = FixedSampler().sample(pipeline, PROMPT, "", 1, 64, 64, 1)
    images = [redux(pipeline, prompt=PROMPT, balance=balance) for balance in (0.0, 0.25, 0.5)]
    to_text = [(image - text_only).abs().mean().item() for image in images]
    to_reference = [(image - no_prompt).abs().mean().item() for image in images]
    assert to_text[0] > to_text[1] > to_text[2]
    assert to_reference[0] < to_reference[1] < to_reference[2]
    # Above 0.5 the text stays at full strength and the reference tokens fade to zero.
    references = [(picture(0), 1.0)]
    half, three_quarters, full = (redux_conditioning(pipeline, references, PROMPT, balance)["prompt_embeds"]
                                  for balance in (0.5, 0.75, 1.0))
    assert torch.equal(half[:, :REDUX_TEXT_TOKENS], full[:, :REDUX_TEXT_TOKENS])
    assert torch.allclose(three_quarters[:, REDUX_TEXT_TOKENS:], half[:, REDUX_TEXT_TOKENS:] * 0.5)
    assert full[:, REDUX_TEXT_TOKENS:].abs().max() == 0 and half[:, REDUX_TEXT_TOKENS:].abs().max() > 0


def test_text_encoders_load_once_and_are_shared(host, tiny_models, fresh_cache) -> None:
    pipeline = handle()
    FixedSampler().sample(pipeline, PROMPT, "", 1, 64, 64, 1)
    for seed in range(2):
        redux(pipeline, seed=seed, prompt=PROMPT)
    FixedSampler().sample(pipeline, PROMPT, "", 2, 64, 64, 1)
    assert fresh_cache.loads == 2  # the Flux pipeline and its Redux companion, once each
    flux, prior = pipeline.pipeline(), redux_pipeline(pipeline, redux_source(pipeline))
    for name in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"):
        assert getattr(prior, name) is getattr(flux, name)
    assert fresh_cache.loads == 2


def test_progress_and_interrupt(host, tiny_models, fresh_cache) -> None:
    redux()
    assert host.progress_events == [(step, STEPS) for step in range(1, STEPS + 1)]

    def interrupt_at_step_two(value: int, total: int) -> None:
        if value == 2:
            interrupted_run.request_interrupt()

    interrupted_run = RunContext(interrupt_at_step_two)
    with run_scope(interrupted_run), pytest.raises(Interrupted):
        redux()
    assert redux().shape == (1, 64, 64, 3)


def test_non_flux_handle_is_refused(host, tiny_models, fresh_cache) -> None:
    with pytest.raises(PresetsError) as info:
        redux(handle("sdxl/illustrious"))
    assert info.value.code == "family_mismatch"
    assert "sdxl/illustrious" in info.value.message and "sdxl preset" in info.value.message
    assert fresh_cache.loads == 0


@pytest.mark.parametrize("image, expected", [
    (torch.zeros(1, 64, 64), "MASK"),
    (torch.zeros(64, 64, 3), "batch dimension"),
    (torch.zeros(1, 64, 64, 4), "4 channel(s)"),
    (torch.zeros(1, 64, 64, 1), "1 channel(s)"),
    (torch.zeros(0, 64, 64, 3), "empty batch"),
    (torch.zeros(1, 1, 1, 3), "1x1 pixels"),
    (torch.zeros(1, 64, 64, 3, dtype=torch.uint8), "dtype torch.uint8"),
    (torch.full((1, 64, 64, 3), float("nan")), "NaN"),
    ("photo.png", "not an IMAGE"),
])
def test_bad_images_are_refused_before_loading(host, tiny_models, fresh_cache, image, expected) -> None:
    with pytest.raises(PresetsError) as info:
        redux(reference=image)
    assert info.value.code == "input_invalid" and expected in info.value.message and info.value.fix
    with pytest.raises(PresetsError) as info:
        redux(reference_2=image)
    assert info.value.message.startswith("reference_2 ")
    assert fresh_cache.loads == 0


def test_bad_weights_and_balance(host, tiny_models, fresh_cache) -> None:
    for kwargs in ({"balance": 1.5}, {"weight_2": -1.0, "reference_2": picture(1)}):
        with pytest.raises(PresetsError) as info:
            redux(**kwargs)
        assert info.value.code == "input_invalid"
    assert fresh_cache.loads == 0


def test_missing_redux_model(host, tiny_models, fresh_cache, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    base = handle()
    missing = tmp_path / "no-redux-here"
    folder = dataclasses.replace(base, preset=dataclasses.replace(base.preset, redux={"folder": str(missing)}))
    with pytest.raises(PresetsError) as info:
        redux(folder)
    assert info.value.code == "model_not_found"
    assert "Flux Redux" in info.value.message and str(missing) in info.value.message
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # even where Redux is downloaded
    hub = dataclasses.replace(base, preset=dataclasses.replace(
        base.preset, redux={"repo": "black-forest-labs/FLUX.1-Redux-dev", "revision": "main"}))
    with pytest.raises(PresetsError) as info:
        redux(hub)
    assert info.value.code == "model_not_found"
    assert "black-forest-labs/FLUX.1-Redux-dev" in info.value.message and "hf download" in info.value.fix
    assert fresh_cache.loads == 0


def test_node_interface() -> None:
    spec = FluxRedux.INPUT_TYPES()
    inputs = {**spec["required"], **spec["optional"]}
    assert list(spec["required"]) == ["pipeline", "reference", "seed", "width", "height", "batch_size", "prompt",
                                      "prompt_balance"]
    assert all(options.get("tooltip") for _type, options in inputs.values())
    assert FluxRedux.RETURN_TYPES == ("IMAGE",) and FluxRedux.TITLE and FluxRedux.DESCRIPTION


def test_example_workflow_runs_with_tiny_weights(host, tiny_models, tmp_path: Path, monkeypatch, capsys) -> None:
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    for kind in ("output", "input", "temp"):  # the CLI points the runner's folders at its arguments
        monkeypatch.setattr(core_nodes.DIRECTORIES, kind, getattr(core_nodes.DIRECTORIES, kind))
    code = cli.main([str(EXAMPLES / "flux_redux.json"), "--input-dir", str(EXAMPLES / "input"), "--output-dir",
                     str(tmp_path / "output"), "--model", "flux/dev=tiny", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err  # needs FluxRedux in NODE_CLASS_MAPPINGS
    (item,) = json.loads(out)["outputs"]["4"]["files"]
    saved = tmp_path / "output" / item["subfolder"] / item["filename"]
    assert Image.open(saved).size == (64, 64)  # width/height 0 = the preset's size, 64 px on tiny weights
