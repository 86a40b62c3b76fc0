"""The CLI end to end with the headless core nodes: exit codes, messages, --json, PNG round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from diffusers_presets.core.host import get_host
from diffusers_presets.runner import cli, core_nodes


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input").mkdir()
    Image.new("RGBA", (16, 8), (200, 10, 10, 64)).save(tmp_path / "input" / "red.png")
    host = get_host()
    saved = (host.models_root, dict(host.extra_folders), dict(host.model_overrides))
    yield tmp_path
    host.models_root, host.extra_folders, host.model_overrides = saved[0], saved[1], saved[2]
    core_nodes.set_directories(Path.cwd() / "output", Path.cwd() / "input", Path.cwd() / "temp")


def api_workflow(prefix="run/img"):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}, "_meta": {"title": "Load"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def write(path: Path, data) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return str(path)


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_api_workflow_runs_and_saves(workdir, capsys):
    code, out, err = run_cli(capsys, write(workdir / "wf.json", api_workflow()), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["status"] == "success" and summary["prompt_id"]
    assert summary["outputs"] == {
        "2": {"class_type": "SaveImage", "title": "SaveImage",
              "files": [{"filename": "img_00001_.png", "subfolder": "run", "type": "output"}]}
    }
    assert "▶ node 1 'Load' (LoadImage)" in err
    assert (workdir / "output" / "run" / "img_00001_.png").is_file()
    code, out, _ = run_cli(capsys, str(workdir / "wf.json"))
    assert code == 0
    assert "img_00002_.png" in out  # the counter continues


def test_png_round_trip_gives_the_same_prompt_and_pixels(workdir, capsys):
    ui = {"nodes": [], "links": [], "version": 0.4, "extra": {"note": "kept"}}
    request = {"prompt": api_workflow("first"), "extra_data": {"extra_pnginfo": {"workflow": ui}}}
    # a /prompt request body carries both the prompt and the UI workflow
    assert run_cli(capsys, write(workdir / "wf.json", request))[0] == 0
    first = workdir / "output" / "first_00001_.png"
    chunks = Image.open(first).text
    assert json.loads(chunks["workflow"]) == ui
    prompt = json.loads(chunks["prompt"])
    assert prompt == api_workflow("first")
    assert run_cli(capsys, str(first), "--set", "2.filename_prefix=second")[0] == 0
    second = workdir / "output" / "second_00001_.png"
    again = json.loads(Image.open(second).text["prompt"])
    again["2"]["inputs"]["filename_prefix"] = "first"
    assert again == prompt
    assert json.loads(Image.open(second).text["workflow"]) == ui
    assert list(Image.open(first).getdata()) == list(Image.open(second).getdata())


def test_ui_workflow_embeds_the_workflow(workdir, capsys):
    ui = {
        "version": 0.4, "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], "widgets_values": ["red.png", "image"]},
            {"id": 2, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "outputs": [], "widgets_values": ["ui_%date:yyyy%"]},
        ],
    }
    code, out, err = run_cli(capsys, write(workdir / "ui.json", ui), "--json")
    assert code == 0, err
    (item,) = json.loads(out)["outputs"]["2"]["files"]
    saved = workdir / "output" / item["filename"]
    assert json.loads(Image.open(saved).text["workflow"]) == ui
    assert json.loads(Image.open(saved).text["prompt"])["2"]["_meta"] == {"title": "Save Image"}


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"1": {"class_type": "SaveImage", "inp', "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "neither a ComfyUI workflow"),
    ],
)
def test_unreadable_json(workdir, capsys, content, needle):
    code, _, err = run_cli(capsys, write(workdir / "bad.json", content))
    assert code == 2 and needle in err and "Traceback" not in err


def test_non_utf8_and_png_without_metadata(workdir, capsys):
    (workdir / "latin1.json").write_bytes('{"a": "é"}'.encode("latin-1"))
    code, _, err = run_cli(capsys, str(workdir / "latin1.json"))
    assert code == 2 and "not UTF-8" in err
    Image.new("RGB", (4, 4)).save(workdir / "plain.png")
    code, _, err = run_cli(capsys, str(workdir / "plain.png"))
    assert code == 2 and "no embedded ComfyUI workflow" in err
    (workdir / "cut.png").write_bytes((workdir / "plain.png").read_bytes()[:20])
    code, _, err = run_cli(capsys, str(workdir / "cut.png"))
    assert code == 2 and "Traceback" not in err
    code, _, err = run_cli(capsys, str(workdir / "missing.json"))
    assert code == 2 and "file not found" in err


@pytest.mark.parametrize(
    "change,needles",
    [
        (lambda p: p["2"]["inputs"].update(images=["9", 0]), ["node 2", "'images'", "does not exist"]),
        (lambda p: p["1"]["inputs"].update(image="nope.png"), ["Invalid image file: nope.png"]),
        (lambda p: p.update({"3": {"class_type": "KSampler", "inputs": {}}}), ["node 3", "ComfyUI core node"]),
    ],
)
def test_invalid_workflows_list_every_error(workdir, capsys, change, needles):
    prompt = api_workflow()
    change(prompt)
    code, out, err = run_cli(capsys, write(workdir / "wf.json", prompt))
    assert code == 2 and "Traceback" not in err
    for needle in needles:
        assert needle in err
    code, out, _ = run_cli(capsys, str(workdir / "wf.json"), "--json")
    assert json.loads(out)["status"] == "invalid" and json.loads(out)["node_errors"]


def test_set_overrides(workdir, capsys):
    path = write(workdir / "wf.json", {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "2": {"class_type": "PreviewAny", "inputs": {}},
    })
    code, _, err = run_cli(capsys, path, "--set", "7.value=3")
    assert code == 2 and "no node '7'" in err
    code, _, err = run_cli(capsys, path, "--set", "1.vlue=3")
    assert code == 2 and "has no input 'vlue'" in err and "value" in err
    code, _, err = run_cli(capsys, path, "--set", "novalue")
    assert code == 2 and "NODE_ID.INPUT=VALUE" in err
    # validation stops a pack workflow before any model loads
    sampler = {
        "1": {"class_type": "PresetLoader", "inputs": {"preset": "demo/sdxl"}},
        "2": {"class_type": "FixedSampler", "inputs": {"pipeline": ["1", 0], "prompt": "a cat", "negative_prompt": "",
                                                       "seed": 1, "width": 0, "height": 0, "batch_size": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    path = write(workdir / "wf2.json", sampler)
    code, _, err = run_cli(capsys, path, "--set", '2.seed="abc"')
    assert code == 2 and "Failed to convert an input value to a INT value" in err
    code, _, err = run_cli(capsys, path, "--set", "2.width=99999")
    assert code == 2 and "bigger than max" in err and "node 2" in err and "'width'" in err
    code, _, err = run_cli(capsys, path, "--set", "1.preset=nope/nope")
    assert code == 2 and "Value not in list" in err


def test_execution_error_exit_1(workdir, capsys):
    prompt = api_workflow()
    prompt["2"]["inputs"]["filename_prefix"] = "../../escape"
    code, out, err = run_cli(capsys, write(workdir / "wf.json", prompt), "--json")
    assert code == 1
    summary = json.loads(out)
    assert summary["status"] == "error" and summary["error"]["node_id"] == "2"
    assert "error in node 2 'SaveImage' (SaveImage): [input_invalid] filename_prefix '../../escape' would save " \
           "outside the output folder" in err
    assert err.count("would save outside") == 1  # printed once: the engine's own log line is not repeated
    assert summary["error"]["error_code"] == "input_invalid"


def test_model_overrides_and_models_dir(workdir, capsys, monkeypatch):
    (workdir / "extra_model_paths.yaml").write_text("comfy:\n  base_path: /srv/comfy\n  checkpoints: models/checkpoints\n  unet: |\n    models/unet\n    more/unet\n")
    code, _, _ = run_cli(capsys, write(workdir / "wf.json", api_workflow()), "--model", "sdxl/illustrious=tiny", "--models-dir", str(workdir / "m"))
    assert code == 0
    host = get_host()
    assert host.model_overrides["sdxl/illustrious"] == "tiny"
    assert host.models_dir() == workdir / "m"
    assert host.extra_folders["checkpoints"] == [Path("/srv/comfy/models/checkpoints")]
    assert host.extra_folders["diffusion_models"] == [Path("/srv/comfy/models/unet"), Path("/srv/comfy/more/unet")]
    code, _, err = run_cli(capsys, str(workdir / "wf.json"), "--model", "oops")
    assert code == 2 and "PRESET=SOURCE" in err


def test_serve_dispatches_to_the_server(capsys):
    # a bad option fails before anything listens (the server itself: tests/server/)
    code, _, err = run_cli(capsys, "serve", "--model", "oops")
    assert code == 2 and "PRESET=SOURCE" in err


def test_stdin(workdir, capsys, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(api_workflow()).encode())))
    code, _, err = run_cli(capsys, "-")
    assert code == 0, err


@pytest.mark.parametrize("prefix", ["nul\x00", "lone\udcff"])
def test_unwritable_filename_prefix_is_input_invalid(workdir, capsys, prefix):
    code, out, err = run_cli(capsys, write(workdir / "wf.json", api_workflow(prefix)))
    assert code == 1 and "[input_invalid]" in err and "no file name can hold" in err
    assert not (workdir / "output").exists()


def test_broken_input_image_is_input_invalid(workdir, capsys):
    (workdir / "input" / "red.png").write_bytes(b"GIF89a but not really")
    code, _, err = run_cli(capsys, write(workdir / "wf.json", api_workflow()))
    assert code == 1 and "[input_invalid] the input image 'red.png' cannot be read" in err
    assert "Traceback" not in err and err.count("cannot be read") == 1


def test_control_characters_from_a_workflow_are_escaped(workdir, capsys):
    # in a validation error (the preset name) ...
    sampler = {
        "1": {"class_type": "PresetLoader", "inputs": {"preset": "\x1b[2Jdemo/sdxl\x07"}},
        "2": {"class_type": "FixedSampler", "inputs": {"pipeline": ["1", 0], "prompt": "a cat", "negative_prompt": "",
                                                       "seed": 1, "width": 0, "height": 0, "batch_size": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    code, out, err = run_cli(capsys, write(workdir / "wf.json", sampler))
    assert code == 2 and "\\x1b[2Jdemo/sdxl\\x07" in err
    # ... in progress lines and in the summary (a file name) ...
    prompt = api_workflow("bell\x07\x9b")
    prompt["\x1b[H1"] = prompt.pop("1")
    prompt["2"]["inputs"]["images"] = ["\x1b[H1", 0]
    code, out, err = run_cli(capsys, write(workdir / "wf2.json", prompt))
    assert code == 0 and "bell\\x07\\x9b_00001_.png" in out and "▶ node \\x1b[H1 'Load'" in err
    # ... and in an execution error
    prompt["2"]["inputs"]["filename_prefix"] = "../\x1b[2J"
    code, out, err = run_cli(capsys, write(workdir / "wf3.json", prompt))
    assert code == 1 and "'../\\x1b[2J'" in err
    for text in (out, err):
        assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f for c in text)


@pytest.mark.parametrize("encoding", ["utf-8:strict", "ascii:strict"])
def test_text_a_strict_terminal_cannot_show_is_escaped(tmp_path, encoding):
    """A saved file's path that is not valid UTF-8, or (on ASCII) not ASCII, is printed escaped
    instead of ending a finished run with a traceback."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "input").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "input" / "red.png")
    write(tmp_path / "wf.json", api_workflow("café"))
    output = os.fsencode(tmp_path) + b"/out\xff"  # a valid Linux folder name that is not UTF-8
    result = subprocess.run(
        [sys.executable, "-m", "runner", str(tmp_path / "wf.json"), "--input-dir", str(tmp_path / "input"),
         b"--output-dir", output], cwd=root, capture_output=True, timeout=300,
        env={**os.environ, "PYTHONIOENCODING": encoding},
    )
    assert result.returncode == 0, result.stderr.decode()
    assert (Path(os.fsdecode(output)) / "café_00001_.png").is_file()
    name = b"caf\\xe9" if encoding.startswith("ascii") else "café".encode()
    assert b"out\\udcff/" + name + b"_00001_.png" in result.stdout


def test_uncoded_failures_are_internal_error(workdir, capsys, monkeypatch):
    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(core_nodes.SaveImage, "save_images", broken)
    path = write(workdir / "wf.json", api_workflow())
    code, _, err = run_cli(capsys, path)
    assert code == 1 and err.splitlines()[-1] == (
        "error in node 2 'SaveImage' (SaveImage): [internal_error] ZeroDivisionError: division by zero. "
        "Fix: run with -v for the traceback, and report it: this is a bug.")
    code, out, _ = run_cli(capsys, path, "--json")
    assert json.loads(out)["error"]["error_code"] == "internal_error"
    code, _, err = run_cli(capsys, path, "-v")
    assert code == 1 and "Traceback (most recent call last)" in err and 'in broken\n    raise ZeroDivisionError' in err
    assert err.rstrip().endswith("ZeroDivisionError: division by zero\nsecond line")
    # outside any node: the CLI's own last line of defence
    monkeypatch.setattr(cli, "load_prompt", lambda *args: {}["boom"])
    code, _, err = run_cli(capsys, path)
    assert code == 1 and err.strip() == (
        "error: [internal_error] KeyError: 'boom'. Fix: run with -v for the traceback, and report it: this is a bug.")
    code, _, err = run_cli(capsys, path, "-v")
    assert code == 1 and "Traceback (most recent call last)" in err and "KeyError: 'boom'" in err
    code, out, _ = run_cli(capsys, path, "--json")
    assert code == 1 and json.loads(out)["error"] == {
        "code": "internal_error", "message": "KeyError: 'boom'", "fix": cli.INTERNAL_FIX}


def test_gated_repo_says_how_to_get_access(workdir, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(workdir / "empty-hub"))
    monkeypatch.delenv("DIFFUSERS_PRESETS_ALLOW_DOWNLOAD", raising=False)
    examples = Path(__file__).resolve().parents[2] / "example_workflows"
    code, _, err = run_cli(capsys, str(examples / "flux-dev.json"))
    assert code == 1 and "[model_not_found]" in err and "gated" in err
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in err and "`hf auth login`" in err
    assert "`--model flux/dev=tiny`" in err
    code, _, err = run_cli(capsys, str(examples / "flux-schnell.json"))
    assert code == 1 and "[model_not_found]" in err and "FLUX.1-schnell" in err
    assert "a gated repo" not in err and "hf auth login" not in err


def test_first_demo_run_prints_only_the_runners_lines(tmp_path):
    """A fresh cache: the demo builds only the SDXL tiny model, says so, and no library
    warning reaches the terminal."""
    import os
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-m", "runner", "example_workflows/demo_sdxl.json", "--output-dir", str(tmp_path / "out")],
        cwd=root, capture_output=True, text=True, timeout=600, env={**os.environ, "DIFFUSERS_PRESETS_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if not re.fullmatch(r"  step \d+/20", line)]
    assert lines == [
        "▶ node 1 'Preset Loader (Diffusers)' (PresetLoader)",
        f"demo/sdxl runs on the tiny random-weight sdxl model: building it once "
        f"in {cache / 'tiny-models' / 'sdxl'} (a few seconds)",
        "▶ node 2 'VRAM Profile (Diffusers)' (VramProfile)",
        "▶ node 3 'Fixed Sampler (Diffusers)' (FixedSampler)",
        "▶ node 4 'Save Image' (SaveImage)",
    ]
    assert sorted(p.name for p in (cache / "tiny-models").iterdir()) == ["sdxl"]
    assert result.stdout.splitlines()[1:] == [f"  {tmp_path / 'out' / 'diffusers-presets' / 'demo-sdxl_00001_.png'}"]


def test_undeclared_link_and_null_required_input_are_invalid(workdir, capsys):
    prompt = api_workflow()
    prompt["3"] = {"class_type": "PrimitiveInt", "inputs": {"value": 1}}
    prompt["1"]["inputs"]["extra"] = ["3", 0]
    code, _, err = run_cli(capsys, write(workdir / "wf.json", prompt))
    assert code == 2 and "node 1 'Load' (LoadImage), input 'extra'" in err and "has no input 'extra'" in err
    code, _, err = run_cli(capsys, write(workdir / "wf2.json", api_workflow()), "--set", "2.images=null")
    assert code == 2 and "node 2 'SaveImage' (SaveImage), input 'images': Required input is missing: images is null" in err


def test_download_progress_reads_in_bytes_and_sampling_in_steps():
    import io

    from diffusers_presets.runner.cli import ConsoleReporter

    prompt = {"1": {"class_type": "CivitaiLoraLoader", "inputs": {}}, "2": {"class_type": "FixedSampler", "inputs": {}}}
    stream = io.StringIO()
    reporter = ConsoleReporter(prompt, stream)
    for done in range(0, 50_000_001, 1_000_000):  # a download reports every chunk
        reporter("progress", {"value": done, "max": 50_000_000, "node": "1", "prompt_id": "p"})
    reporter("progress", {"value": 3, "max": 20, "node": "2", "prompt_id": "p"})
    lines = stream.getvalue().splitlines()
    assert lines[0] == "  0.0 kB of 50.0 MB" and lines[-2] == "  50.0 MB of 50.0 MB"
    assert len(lines) <= 4  # first, at most a timed one, the last chunk, the step
    assert lines[-1] == "  step 3/20"
