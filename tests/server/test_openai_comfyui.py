"""Inside ComfyUI: the Images API routes mount on (a stand-in of) ComfyUI's PromptServer and
a request becomes a prompt on its PromptQueue, answered from ComfyUI's history."""

from __future__ import annotations

from pathlib import Path

from tests.comfy_loading import LOAD_PACK, run_in_comfyui


SCRIPT = """
import asyncio, base64, io, json, threading
import server, execution
from aiohttp import web
prompt_server = server.PromptServer()
""" + LOAD_PACK + """
execution.known_nodes.update(pack.NODE_CLASS_MAPPINGS)
app = prompt_server.app
app.add_routes(prompt_server.routes)  # what ComfyUI does once the custom nodes are loaded
loop = asyncio.new_event_loop()
runner = web.AppRunner(app)
loop.run_until_complete(runner.setup())
site = web.TCPSite(runner, "127.0.0.1", 0)
loop.run_until_complete(site.start())
port = runner.addresses[0][1]
threading.Thread(target=loop.run_forever, daemon=True).start()
queued = []

def worker():
    # ComfyUI's prompt_worker, reduced: run the graph's output node on a red image.
    import torch
    item, item_id = prompt_server.prompt_queue.get()
    queued.append(item)
    graph = item[2]
    out = graph["output"]["inputs"]
    red = torch.zeros(1, 64, 64, 3)
    red[..., 0] = 1.0
    pack.NODE_CLASS_MAPPINGS["ImagesApiOutput"]().output(red, out["request_id"], out["output_format"],
                                                          out["output_compression"])
    prompt_server.prompt_queue.task_done(item_id, {}, {"status_str": "success", "completed": True,
                                                       "messages": [["execution_success", {}]]})

threading.Thread(target=worker, daemon=True).start()
import openai
client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
reply = client.images.generate(prompt="a fox", model="flux/schnell", size="64x64", extra_body={"seed": 5})
from PIL import Image
pixel = Image.open(io.BytesIO(base64.b64decode(reply.data[0].b64_json))).getpixel((3, 3))
try:
    client.images.generate(prompt="a fox", model="flux/schnell", size="65x64")
    refused = None
except openai.BadRequestError as exc:
    refused = exc.code
item = queued[0]
print(json.dumps({"pixel": list(pixel), "refused": refused, "len": len(item), "number": item[0],
                  "classes": sorted(node["class_type"] for node in item[2].values()),
                  "seed": item[2]["sampler"]["inputs"]["seed"], "models": len(client.models.list().data)}))
"""


def test_routes_mount_on_comfyui_and_queue_a_prompt(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    report = run_in_comfyui(SCRIPT, models, tmp_path)
    assert report["pixel"] == [255, 0, 0]
    assert report["refused"] == "unsupported_size"
    assert report["len"] == 6 and report["number"] == 0  # ComfyUI's 6-tuple queue item
    assert report["classes"] == ["FixedSampler", "ImagesApiOutput", "PresetLoader"]
    assert report["seed"] == 5 and report["models"] > 0
