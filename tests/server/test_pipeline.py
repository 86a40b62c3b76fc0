"""A real tiny SDXL pipeline behind the server: ComfyUI's documented websocket example flow
gives the CLI's pixels, and an interrupt stops sampling while the queue goes on."""

from __future__ import annotations

import io
import json
import urllib.parse
from pathlib import Path

import numpy as np
from PIL import Image
from server_helpers import Socket, http

from diffusers_presets.runner import cli, core_nodes
from diffusers_presets.runner.cli import load_prompt

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "example_workflows" / "demo_sdxl.json"


def _demo_prompt(seed: int) -> dict:
    prompt, _ = load_prompt(str(DEMO), core_nodes.node_registry())
    sampler = next(n for n in prompt.values() if n["class_type"] == "FixedSampler")
    sampler["inputs"]["seed"] = seed
    return prompt


def test_websocket_example_flow_gives_the_cli_pixels(make_server, tmp_path: Path, capsys) -> None:
    cli_out = tmp_path / "cli"
    assert cli.main([str(DEMO), "--output-dir", str(cli_out), "--set", "3.seed=7", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (cli_file,) = [f for node in summary["outputs"].values() for f in node["files"]]
    expected = np.array(Image.open(cli_out / cli_file["subfolder"] / cli_file["filename"]))

    server = make_server(root=tmp_path / "srv")
    # ComfyUI's script_examples/websockets_api_example.py, step by step
    ws = Socket(server.url, "example-client")
    prompt = _demo_prompt(7)
    reply = http("POST", server.url + "/prompt", {"prompt": prompt, "client_id": "example-client"})
    prompt_id = reply.json()["prompt_id"]
    messages = ws.until_done(prompt_id)
    steps = [m["data"] for m in messages if m["type"] == "progress"]
    assert [s["value"] for s in steps] == list(range(1, steps[0]["max"] + 1)) and steps[0]["node"] == "3"
    history = http("GET", f"{server.url}/history/{prompt_id}").json()[prompt_id]
    images = [image for output in history["outputs"].values() for image in output.get("images", [])]
    assert len(images) == 1
    query = urllib.parse.urlencode({k: images[0][k] for k in ("filename", "subfolder", "type")})
    reply = http("GET", f"{server.url}/view?{query}")
    assert reply.status == 200
    assert np.array_equal(np.array(Image.open(io.BytesIO(reply.body))), expected)
    health = http("GET", server.url + "/health").json()
    assert health["loaded_pipelines"] >= 1 and health["torch_loaded"]


def test_interrupt_mid_sampling_then_next_prompt_runs(make_server, tmp_path: Path) -> None:
    server = make_server(root=tmp_path)
    ws = Socket(server.url, "c")
    first = http("POST", server.url + "/prompt", {"prompt": _demo_prompt(101), "client_id": "c"}).json()["prompt_id"]
    second = http("POST", server.url + "/prompt", {"prompt": _demo_prompt(102), "client_id": "c"}).json()["prompt_id"]
    while True:
        message = ws.next()
        if message["type"] == "progress" and message["data"]["prompt_id"] == first:
            break
    assert http("POST", server.url + "/interrupt", {}).status == 200
    messages = ws.until_done(first)
    kinds = [m["type"] for m in messages]
    assert "execution_interrupted" in kinds and "executed" not in kinds
    progress = [m["data"] for m in ws.messages if m["type"] == "progress" and m["data"]["prompt_id"] == first]
    assert progress[-1]["value"] < progress[-1]["max"]  # stopped mid-sampling
    assert not list((tmp_path / "output").rglob("*.png"))  # nothing half-written
    second_messages = ws.until_done(second)
    assert second_messages[-2]["type"] == "execution_success"
    assert len(list((tmp_path / "output").rglob("*.png"))) == 1
