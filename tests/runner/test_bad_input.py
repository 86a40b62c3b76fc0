"""Bad input never produces a traceback, a hang or a memory blow-up: nesting and digit bombs,
decompression-bomb PNGs, expansion bombs, malformed UI and API workflows and ``--set`` on odd
nodes each end in a coded error (``workflow_invalid`` / ``input_invalid``) and exit 2."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import bad_inputs as bad
from diffusers_presets.core.errors import PresetsError
from diffusers_presets.runner import cli, core_nodes
from diffusers_presets.runner.convert import DEFAULT_MAX_NODES, convert_workflow, resolve_dynamic_prompt
from diffusers_presets.runner.host_setup import parse_value
from diffusers_presets.runner.workflow_io import read_workflow

REPO = Path(__file__).resolve().parents[2]
API = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    core_nodes.set_directories(Path.cwd() / "output", Path.cwd() / "input", Path.cwd() / "temp")


def refused(capsys, code, *argv):
    """Run the CLI in process; it must exit 2 with one coded error line and no traceback."""
    status = cli.main(list(argv))
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"[{code}]" in err and "Traceback" not in err and "internal_error" not in err, err
    return err


def write(path: Path, data) -> str:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def convert(workflow, **kwargs):
    return convert_workflow(workflow, core_nodes.node_registry(), **kwargs)


# --- size and depth bombs -------------------------------------------------------------------------------
def test_json_file_nested_1100_deep(workdir, capsys):
    err = refused(capsys, "workflow_invalid", write(workdir / "deep.json", bad.deep_json(1100)))
    assert "nested too deeply" in err


def test_json_nested_deeper_than_the_limit_but_parsable_is_refused_too(workdir, capsys):
    # 150 levels parse, but copies and dumps of the prompt later would recurse that deep
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": json.loads(bad.deep_json(150))}}}
    err = refused(capsys, "workflow_invalid", write(workdir / "deep.json", prompt))
    assert "nested too deeply (more than 100 levels" in err


@pytest.mark.parametrize("compressed", [False, True], ids=["tEXt", "zTXt"])
@pytest.mark.parametrize("key", ["prompt", "workflow"])
def test_png_metadata_nested_1100_deep(workdir, capsys, key, compressed):
    data = bad.png(texts={key: bad.deep_json(1100)}, compressed=compressed)
    err = refused(capsys, "workflow_invalid", write(workdir / "deep.png", data))
    assert f"the PNG's '{key}' metadata is nested too deeply" in err


def test_set_value_nested_1100_deep(workdir, capsys):
    err = refused(capsys, "input_invalid", write(workdir / "wf.json", API), "--set", f"1.image={bad.deep_json(1100)}")
    assert "--set value" in err and "nested too deeply" in err


def test_integer_of_4301_digits_in_a_file_and_in_set(workdir, capsys):
    err = refused(capsys, "workflow_invalid", write(workdir / "big.json", bad.big_int_prompt(4301)))
    assert "4300" in err
    err = refused(capsys, "input_invalid", write(workdir / "wf.json", API), "--set", "1.image=" + "9" * 4301)
    assert "4300" in err


def test_set_value_that_is_not_json_stays_text(workdir):
    assert parse_value("{a|b}", "--set") == "{a|b}"
    assert parse_value("[1, 2]", "--set") == [1, 2]
    assert parse_value("9" * 4300, "--set") == int("9" * 4300)


def test_png_whose_header_claims_100000_by_100000_pixels(workdir, capsys):
    data = bad.png(100_000, 100_000, texts={"prompt": json.dumps(API)})
    assert len(data) < 400
    err = refused(capsys, "workflow_invalid", write(workdir / "bomb.png", data))
    assert "claims 100000×100000 pixels" in err
    bare = bad.png(100_000, 100_000)
    assert len(bare) == 68  # the 68-byte bomb that made PIL raise DecompressionBombError
    refused(capsys, "workflow_invalid", write(workdir / "bare.png", bare))


def test_png_metadata_is_read_without_pixels(workdir):
    # A PNG whose pixel data is garbage still gives up its workflow: nothing decodes pixels.
    loaded = read_workflow(write(workdir / "ok.png", bad.png(64, 64, texts={"prompt": json.dumps(API)}, compressed=True)))
    assert loaded.prompt == API and loaded.ui is None


@pytest.mark.parametrize("zip_", [False, True])
def test_png_itxt_chunks_written_by_pil_are_read(workdir, zip_):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("prompt", json.dumps(API), zip=zip_)
    Image.new("RGB", (8, 8)).save(workdir / "i.png", pnginfo=info)
    assert read_workflow(str(workdir / "i.png")).prompt == API


def test_png_text_that_inflates_beyond_the_limit(workdir, capsys, monkeypatch):
    from diffusers_presets.runner import workflow_io

    monkeypatch.setattr(workflow_io, "MAX_TEXT_BYTES", 1000)
    data = bad.png(texts={"prompt": json.dumps(API) + " " * 5000}, compressed=True)
    err = refused(capsys, "workflow_invalid", write(workdir / "z.png", data))
    assert "inflates to more than" in err


def test_dynamic_prompt_nested_1000_deep_is_expanded_without_recursion():
    rng = random.Random(1)
    assert {resolve_dynamic_prompt(bad.nested_choices(1000), rng) for _ in range(20)} == {"a", "b"}
    assert resolve_dynamic_prompt(bad.nested_choices(100_000), rng) in {"a", "b"}
    # unclosed groups close at the end; stray | and } outside a group are text
    assert resolve_dynamic_prompt("x } | {y", rng) == "x } | y"


def test_dynamic_prompt_bomb_in_a_workflow(workdir, capsys):
    workflow = {
        "nodes": [
            {"id": 9, "type": "FixedSampler", "inputs": [{"name": "pipeline", "type": "DIFFUSERS_PIPELINE", "link": None}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
             "widgets_values": [bad.nested_choices(1000), "", 1, "fixed", 64, 64, 1]},
            {"id": 10, "type": "SaveImage", "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "widgets_values": ["x"]},
        ],
        "links": [[1, 9, 0, 10, 0, "IMAGE"]],
        "version": 0.4,
    }
    assert convert(workflow)["9"]["inputs"]["prompt"] in {"a", "b"}
    # through the CLI: converted, then refused by validation only for the unlinked pipeline
    status = cli.main([write(workdir / "wf.json", workflow)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and "internal_error" not in err
    assert "(FixedSampler), input 'pipeline'" in err and "prompt" not in err


# --- expansion bombs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,names", [(bad.subgraph_bomb, "subgraph 'level"), (bad.group_node_bomb, "group node 'workflow>G")])
def test_expansion_bomb_stops_at_the_node_budget(workdir, capsys, make, names):
    workflow = make(40)
    assert len(json.dumps(workflow)) < 5_000  # a few KB for 2**40 nodes
    err = refused(capsys, "workflow_invalid", write(workdir / "bomb.json", workflow))
    assert f"more than {DEFAULT_MAX_NODES:,} nodes" in err and names in err


@pytest.mark.parametrize("make", [bad.subgraph_bomb, bad.group_node_bomb])
def test_node_budget_is_adjustable(monkeypatch, make):
    small = make(4)  # 1 + 2 + 4 + 8 instances, 8 leaves: 23 nodes in all
    assert len(convert(small)) == 8
    with pytest.raises(PresetsError, match="more than 22 nodes"):
        convert(small, max_nodes=22)
    assert len(convert(small, max_nodes=23)) == 8
    monkeypatch.setenv("RUNNER_MAX_NODES", "10")
    with pytest.raises(PresetsError, match="more than 10 nodes") as info:
        convert(small)
    assert info.value.code == "workflow_invalid"
    monkeypatch.setenv("RUNNER_MAX_NODES", "lots")
    with pytest.raises(PresetsError) as info:
        convert(small)
    assert info.value.code == "input_invalid" and "RUNNER_MAX_NODES" in info.value.message


# --- malformed UI workflows -----------------------------------------------------------------------------
def test_base_workflow_is_valid():
    prompt = convert(bad.base_workflow())
    assert prompt["3"]["inputs"]["images"] == ["1", 0]  # through the bypassed node
    assert prompt["6"]["inputs"]["images"] == ["1", 0]  # through Set/Get
    assert prompt["7:1"]["inputs"]["images"] == ["1", 0]  # into the subgraph
    assert prompt["8:0"]["inputs"]["images"] == ["1", 0]  # into the group node


@pytest.mark.parametrize("name,words", [(n, w) for n, _, w in bad.CORRUPTIONS], ids=[n for n, _, _ in bad.CORRUPTIONS])
def test_malformed_ui_workflow_names_the_node_and_field(name, words):
    with pytest.raises(PresetsError) as info:
        convert(bad.corrupted(name))
    assert info.value.code == "workflow_invalid"
    for word in words:
        assert word in info.value.message


def test_malformed_ui_workflows_through_the_cli(workdir, capsys):
    for name, _, words in bad.CORRUPTIONS:
        err = refused(capsys, "workflow_invalid", write(workdir / "wf.json", bad.corrupted(name)))
        assert words[-1] in err, name


# --- malformed API prompts and --set on odd nodes ---------------------------------------------------------
@pytest.mark.parametrize("name,prompt,words", bad.api_prompts(), ids=[n for n, _, _ in bad.api_prompts()])
def test_malformed_api_prompt(workdir, capsys, name, prompt, words):
    err = refused(capsys, "workflow_invalid", write(workdir / "wf.json", prompt), "--set", "1.image=x.png")
    for word in words:
        assert word in err
    err = refused(capsys, "workflow_invalid", write(workdir / "body.json", {"prompt": prompt}))
    assert words[-1] in err


@pytest.mark.parametrize("node", [{"class_type": ["LoadImage"], "inputs": {}}, {"class_type": "LoadImage", "inputs": ["a"]}, "x"])
def test_set_on_odd_nodes(node):
    with pytest.raises(PresetsError) as info:
        cli.apply_overrides({"1": node}, ["1.image=a.png"], core_nodes.node_registry())
    assert info.value.code == "workflow_invalid"


# --- the same through `python -m runner` ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "case",
    ["deep json", "png bomb", "subgraph bomb", "set big int", "malformed ui"],
)
def test_subprocess_exit_2_without_traceback(tmp_path, case):
    workflow = write(tmp_path / "wf.json", API)
    argv = {
        "deep json": [write(tmp_path / "deep.json", bad.deep_json(1100))],
        "png bomb": [write(tmp_path / "bomb.png", bad.png(100_000, 100_000))],
        "subgraph bomb": [write(tmp_path / "bomb.json", bad.subgraph_bomb(40))],
        "set big int": [workflow, "--set", "1.image=" + "9" * 4301],
        "malformed ui": [write(tmp_path / "ui.json", bad.corrupted("bypassed node linked from slot -100"))],
    }[case]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "runner", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "internal_error" not in done.stderr
    assert "[workflow_invalid]" in done.stderr or "[input_invalid]" in done.stderr


def test_set_image_to_a_number_is_an_invalid_file_not_an_exception(workdir, capsys):
    status = cli.main([write(workdir / "wf.json", API), "--set", "1.image=5"])
    err = capsys.readouterr().err
    assert status == 2 and "Invalid image file: 5" in err
    assert "Exception when validating" not in err and "Traceback" not in err


def test_extra_model_paths_yaml_nested_1100_deep(workdir, capsys):
    (workdir / "extra_model_paths.yaml").write_text(bad.deep_json(1100))
    err = refused(capsys, "workflow_invalid", write(workdir / "wf.json", API))
    assert "cannot read the extra model paths file" in err


@pytest.mark.parametrize("value", [bad.deep_json(1100), "9" * 4301], ids=["deep", "digits"])
def test_presets_add_param_bomb(workdir, capsys, monkeypatch, value):
    monkeypatch.setenv("PRESETS_DIR", str(workdir / "presets"))
    err = refused(capsys, "input_invalid", "presets", "add", "a/b", "--base", "sdxl", "--param", f"k={value}")
    assert "--param value" in err and not (workdir / "presets" / "a").exists()
