"""ComfyUI's HTTP + WebSocket API on the engine's stub nodes: message order and shapes,
delivery rules, queue and history routes, interrupts."""

from __future__ import annotations

import io
import threading
import time

import pytest
from engine_stubs import StubSteps
from PIL import Image
from server_helpers import Socket, http, stub_registry

ADD = {
    "1": {"class_type": "StubInt", "inputs": {"value": 3}},
    "2": {"class_type": "StubInt", "inputs": {"value": 4}},
    "3": {"class_type": "StubAdd", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
    "4": {"class_type": "StubOutput", "inputs": {"value": ["3", 0]}},
}


def _steps(steps: int, token: int = 0) -> dict:
    return {
        "1": {"class_type": "StubSteps", "inputs": {"steps": steps}},
        "2": {"class_type": "StubAdd", "inputs": {"a": ["1", 0], "b": token}},
        "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}},
    }


@pytest.fixture
def server(make_server):
    return make_server(stub_registry())


@pytest.fixture
def slow_steps():
    """Each StubSteps step takes 20 ms, so a prompt can be interrupted mid-way."""
    hook = lambda step: time.sleep(0.02)  # noqa: E731
    StubSteps.HOOKS.append(hook)
    yield
    StubSteps.HOOKS.remove(hook)


def _queue(server, prompt: dict, client_id: str = "c1", **extra) -> str:
    reply = http("POST", server.url + "/prompt", {"prompt": prompt, "client_id": client_id, **extra})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert set(body) == {"prompt_id", "number", "node_errors"} and body["node_errors"] == {}
    return body["prompt_id"]


def _types(messages: list[dict]) -> list:
    return [(m["type"], m["data"].get("node")) if m["type"] in ("executing", "executed") else m["type"] for m in messages]


def test_success_message_order_shapes_and_history(server) -> None:
    ws = Socket(server.url, "c1")
    assert ws.messages[0]["data"] == {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "c1"}
    prompt_id = _queue(server, ADD)
    messages = ws.until_done(prompt_id)
    types = _types(messages)
    assert types[:2] == ["execution_start", "execution_cached"]
    assert sorted(types[2:5]) == [("executing", "1"), ("executing", "2"), ("executing", "3")]  # the engine's order
    assert types[5:] == [("executing", "4"), ("executed", "4"), "execution_success", ("executing", None)]
    start, cached = messages[0]["data"], messages[1]["data"]
    assert set(start) == {"prompt_id", "timestamp"} and cached["nodes"] == []
    assert messages[5]["data"] == {"node": "4", "display_node": "4", "prompt_id": prompt_id}
    assert messages[6]["data"] == {"node": "4", "display_node": "4", "output": {"values": [7]}, "prompt_id": prompt_id}
    # a status broadcast comes between execution_success and the final executing
    kinds = [m["type"] for m in ws.messages]
    assert kinds[kinds.index("execution_success") + 1] == "status"

    history = http("GET", f"{server.url}/history/{prompt_id}").json()
    entry = history[prompt_id]
    assert entry["prompt"] == [1, prompt_id, ADD, {"client_id": "c1"}, ["4"]]
    assert entry["outputs"] == {"4": {"values": [7]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    assert entry["meta"]["4"] == {"node_id": "4", "display_node": "4", "parent_node": None, "real_node_id": "4"}
    assert http("GET", server.url + "/api/history").json() == history
    assert http("GET", server.url + "/queue").json() == {"queue_running": [], "queue_pending": []}
    assert http("GET", server.url + "/api/prompt").json() == {"exec_info": {"queue_remaining": 0}}


def test_fully_cached_rerun(server) -> None:
    ws = Socket(server.url, "c1")
    ws.until_done(_queue(server, ADD))
    messages = ws.until_done(prompt_id := _queue(server, ADD))
    assert _types(messages) == ["execution_start", "execution_cached", ("executed", "4"), "execution_success", ("executing", None)]
    assert sorted(messages[1]["data"]["nodes"]) == ["1", "2", "3", "4"]
    assert http("GET", f"{server.url}/history/{prompt_id}").json()[prompt_id]["outputs"] == {"4": {"values": [7]}}


def test_validation_failure_is_400_and_queues_nothing(server) -> None:
    ws = Socket(server.url, "c1")
    bad = {**ADD, "1": {"class_type": "StubInt", "inputs": {"value": 1000}}}  # max is 100
    reply = http("POST", server.url + "/prompt", {"prompt": bad, "client_id": "c1"})
    assert reply.status == 400
    body = reply.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    error = body["node_errors"]["1"]["errors"][0]
    assert error["type"] == "value_bigger_than_max" and error["extra_info"]["input_name"] == "value"
    assert body["node_errors"]["1"]["class_type"] == "StubInt"
    reply = http("POST", server.url + "/prompt", {"prompt": {"1": {"class_type": "Nope", "inputs": {}}}})
    assert reply.status == 400 and reply.json()["node_errors"]
    reply = http("POST", server.url + "/prompt", {"client_id": "c1"})
    assert reply.status == 400
    assert reply.json() == {"error": {"type": "no_prompt", "message": "No prompt provided",
                                      "details": "No prompt provided", "extra_info": {}}, "node_errors": {}}
    assert http("GET", server.url + "/queue").json() == {"queue_running": [], "queue_pending": []}
    assert http("GET", server.url + "/history").json() == {}
    # nothing was sent to the client: the next message is the next prompt's
    prompt_id = _queue(server, ADD)
    assert ws.next()["type"] == "status"
    assert ws.until_done(prompt_id)[0]["type"] == "execution_start"


def test_execution_error_then_the_queue_goes_on(server) -> None:
    ws = Socket(server.url, "c1")
    failing = {"1": {"class_type": "StubInt", "inputs": {"value": 5}},
               "2": {"class_type": "StubFail", "inputs": {"value": ["1", 0]}},
               "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}
    prompt_id = _queue(server, failing)
    messages = ws.until_done(prompt_id)
    assert _types(messages) == ["execution_start", "execution_cached", ("executing", "1"), ("executing", "2"),
                                "execution_error", ("executing", None)]  # 3 never runs
    error = messages[4]["data"]
    assert {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type", "traceback",
            "current_inputs", "current_outputs", "timestamp"} <= set(error)
    assert error["node_id"] == "2" and error["node_type"] == "StubFail" and error["executed"] == ["1"]
    assert error["exception_type"] == "ValueError" and "stub failure for 5" in error["exception_message"]
    entry = http("GET", f"{server.url}/history/{prompt_id}").json()[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_error"
    assert _types(ws.until_done(_queue(server, ADD)))[-2] == "execution_success"


def test_interrupt_mid_run_and_the_next_prompt_runs(server, slow_steps) -> None:
    ws = Socket(server.url, "c1")
    first = _queue(server, _steps(200))
    second = _queue(server, ADD)
    while not (ws.messages[-1]["type"] == "progress" and ws.messages[-1]["data"]["prompt_id"] == first):
        ws.next()
    assert ws.messages[-1]["data"] == {"value": 1, "max": 200, "prompt_id": first, "node": "1"}
    # another prompt's id interrupts nothing
    assert http("POST", server.url + "/interrupt", {"prompt_id": second}).status == 200
    assert http("POST", server.url + "/api/interrupt", {"prompt_id": first}).status == 200
    messages = ws.until_done(first)
    interrupted = [m for m in messages if m["type"] == "execution_interrupted"][0]["data"]
    assert interrupted["node_id"] == "1" and interrupted["node_type"] == "StubSteps"
    assert set(interrupted) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    steps = [m["data"]["value"] for m in ws.messages if m["type"] == "progress" and m["data"]["prompt_id"] == first]
    assert steps[-1] < 200
    entry = http("GET", f"{server.url}/history/{first}").json()[first]
    assert entry["status"]["status_str"] == "error" and entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert _types(ws.until_done(second))[-2] == "execution_success"
    jobs = http("GET", server.url + "/api/jobs?status=cancelled,completed").json()
    assert {j["id"]: j["status"] for j in jobs["jobs"]} == {first: "cancelled", second: "completed"}


def test_delivery_only_to_the_prompts_client_and_status_to_all(server) -> None:
    mine, other = Socket(server.url, "mine"), Socket(server.url, "other")
    prompt_id = _queue(server, ADD, client_id="mine")
    mine.until_done(prompt_id)
    # other sees the status broadcasts, then nothing of the prompt
    _queue(server, {"9": {"class_type": "StubOutput", "inputs": {"value": 1}}}, client_id="other")
    seen = []
    while not (seen and seen[-1]["type"] == "executing" and seen[-1]["data"]["node"] is None):
        seen.append(other.next())
    assert all(m["data"].get("prompt_id") != prompt_id for m in seen)
    assert "status" in [m["type"] for m in seen]


def test_prompt_without_client_broadcasts_progress_and_executing_only(server) -> None:
    ws = Socket(server.url, "watcher")
    reply = http("POST", server.url + "/prompt", {"prompt": _steps(2)})
    prompt_id = reply.json()["prompt_id"]
    kinds = {m["type"] for m in ws.until_done(prompt_id)}
    assert kinds == {"executing", "progress"}


def test_reconnect_with_the_same_client_id_resumes(server, slow_steps) -> None:
    ws = Socket(server.url, "phone")
    prompt_id = _queue(server, _steps(60), client_id="phone")
    while ws.next()["type"] != "progress":
        pass
    ws.close()
    again = Socket(server.url, "phone")
    assert again.sid == "phone"
    following = again.next()
    assert following["type"] == "executing" and following["data"] == {"node": "1", "display_node": "1", "prompt_id": prompt_id}
    messages = again.until_done(prompt_id)
    assert messages[-2]["type"] == "execution_success" and "progress" in {m["type"] for m in messages}


def test_feature_flags_and_minted_sid(server) -> None:
    ws = Socket(server.url)
    assert len(ws.sid) == 32
    ws.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    ws.send({"type": "something_else"})
    reply = ws.next()
    assert reply == {"type": "feature_flags", "data": {"supports_preview_metadata": True, "max_upload_size": 100 * 1024 * 1024}}
    assert http("GET", server.url + "/api/features").json() == reply["data"]


def test_queue_order_front_delete_and_clear(server, slow_steps) -> None:
    ws = Socket(server.url, "c1")
    blocker = _queue(server, _steps(40))
    later = [_queue(server, {"9": {"class_type": "StubOutput", "inputs": {"value": n}}}) for n in range(3)]
    front = _queue(server, {"9": {"class_type": "StubOutput", "inputs": {"value": 99}}}, front=True)
    queue = http("GET", server.url + "/api/queue").json()
    assert [item[1] for item in queue["queue_running"]] == [blocker]
    assert {item[1] for item in queue["queue_pending"]} == {*later, front}
    assert len(queue["queue_pending"][0]) == 5
    assert http("POST", server.url + "/queue", {"delete": [later[1]]}).status == 200
    done = []
    while len(done) < 4:
        message = ws.next()
        if message["type"] == "executing" and message["data"]["node"] is None:
            done.append(message["data"]["prompt_id"])
    assert done == [blocker, front, later[0], later[2]]
    _queue(server, _steps(40))
    pending = _queue(server, ADD)
    assert http("POST", server.url + "/queue", {"clear": True}).status == 200
    assert http("GET", server.url + "/queue").json()["queue_pending"] == []
    assert http("GET", f"{server.url}/history/{pending}").json() == {}


def test_history_routes(server) -> None:
    ws = Socket(server.url, "c1")
    ids = []
    for n in range(3):
        ids.append(_queue(server, {"9": {"class_type": "StubOutput", "inputs": {"value": n}}}))
        ws.until_done(ids[-1])
    assert list(http("GET", server.url + "/history?max_items=2").json()) == ids[1:]
    assert list(http("GET", server.url + "/history?max_items=1&offset=0").json()) == ids[:1]
    assert http("GET", server.url + "/history/unknown-id").json() == {}
    assert http("POST", server.url + "/history", {"delete": [ids[0]]}).status == 200
    assert list(http("GET", server.url + "/history").json()) == ids[1:]
    assert http("POST", server.url + "/api/history", {"clear": True}).status == 200
    assert http("GET", server.url + "/history").json() == {}


def test_jobs_route(server, slow_steps) -> None:
    ws = Socket(server.url, "c1")
    done = _queue(server, ADD)
    ws.until_done(done)
    running = _queue(server, _steps(40))
    pending = _queue(server, ADD, extra_data={"extra_pnginfo": {"workflow": {"id": "wf-1"}}})
    active = http("GET", server.url + "/api/jobs?status=in_progress,pending&limit=200&offset=0").json()
    assert [(j["id"], j["status"]) for j in active["jobs"]] == [(running, "in_progress"), (pending, "pending")]
    assert active["jobs"][1]["workflow_id"] == "wf-1"
    assert active["pagination"] == {"offset": 0, "limit": 200, "total": 2, "has_more": False}
    finished = http("GET", server.url + "/api/jobs?status=completed,failed,cancelled&limit=64").json()
    job = finished["jobs"][0]
    assert job["id"] == done and job["status"] == "completed" and isinstance(job["create_time"], int)
    assert job["execution_end_time"] >= job["execution_start_time"]
    assert http("GET", f"{server.url}/api/jobs/{done}").json()["outputs"] == {"4": {"values": [7]}}
    assert http("POST", f"{server.url}/api/jobs/{pending}/cancel").json() == {"cancelled": [pending]}
    assert http("POST", server.url + "/api/jobs/cancel", {"job_ids": [running]}).json() == {"cancelled": [running]}
    ws.until_done(running)
    assert http("GET", server.url + "/api/jobs?status=bogus").status == 400
    assert http("GET", server.url + "/api/jobs/unknown").status == 404


def test_object_info_shape(server) -> None:
    info = http("GET", server.url + "/object_info").json()
    keys = {"input", "input_order", "output", "output_is_list", "output_name", "name", "display_name",
            "description", "python_module", "category", "output_node", "output_tooltips"}
    for name, node in info.items():
        assert keys <= set(node), name
        assert isinstance(node["category"], str) and isinstance(node["python_module"], str), name
        assert node["name"] == name
    for pack_node in ("PresetLoader", "FixedSampler", "VramProfile", "CivitaiLoraLoader", "FluxRedux"):
        assert info[pack_node]["python_module"] == "custom_nodes.diffusers-presets"
    save = info["SaveImage"]
    assert save["python_module"] == "nodes" and save["output_node"] is True and save["display_name"] == "Save Image"
    assert save["input_order"] == {"required": ["images", "filename_prefix"], "hidden": ["prompt", "extra_pnginfo"]}
    assert save["input"]["hidden"] == {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
    add = info["StubAdd"]
    assert add["output"] == ["INT"] and add["output_is_list"] == [False] and add["output_name"] == ["INT"]
    assert http("GET", server.url + "/api/object_info/StubAdd").json() == {"StubAdd": add}
    assert http("GET", server.url + "/object_info/NoSuchNode").json() == {}


def test_system_routes(server) -> None:
    stats = http("GET", server.url + "/system_stats").json()
    assert {"os", "ram_total", "ram_free", "comfyui_version", "required_frontend_version", "installed_templates_version",
            "required_templates_version", "python_version", "pytorch_version", "embedded_python"} <= set(stats["system"])
    assert stats["system"]["argv"] == []
    assert {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"} <= set(stats["devices"][0])
    assert "loras" in http("GET", server.url + "/models").json()
    assert http("GET", server.url + "/models/loras").json() == []
    assert http("GET", server.url + "/models/nope").status == 404
    assert http("GET", server.url + "/embeddings").json() == []
    extensions = http("GET", server.url + "/api/extensions").json()
    assert extensions == ["/extensions/diffusers-presets/default_graph.js"]  # no "extensions/core": those are skipped
    script = http("GET", server.url + extensions[0])
    assert script.status == 200 and "javascript" in script.headers["Content-Type"]
    assert b"beforeConfigureGraph" in script.body
    templates = http("GET", server.url + "/api/workflow_templates").json()
    assert "demo_sdxl" in templates["diffusers-presets"]
    reply = http("GET", server.url + "/api/workflow_templates/diffusers-presets/demo_sdxl.json")
    assert reply.status == 200 and "nodes" in reply.json()
    assert http("GET", server.url + "/api/workflow_templates/diffusers-presets/..%2F..%2FREADME.md").status in (400, 404)
    for name in templates["diffusers-presets"]:  # the template browser's thumbnails
        reply = http("GET", f"{server.url}/api/workflow_templates/diffusers-presets/{name}.jpg")
        assert reply.status == 200 and reply.headers["Content-Type"] == "image/jpeg", name
        assert Image.open(io.BytesIO(reply.body)).size == (256, 256)
    health = http("GET", server.url + "/health").json()
    assert health["status"] == "ok" and health["queue_remaining"] == 0 and "loaded_pipelines" in health
    assert http("POST", server.url + "/free", {"unload_models": True, "free_memory": True}).status == 200


def test_system_stats_requires_the_served_frontend(make_server, tmp_path) -> None:
    from test_frontend import packaged_root

    server = make_server(stub_registry(), front_end_root=packaged_root(tmp_path / "frontend", "1.27.10"))
    assert http("GET", server.url + "/system_stats").json()["system"]["required_frontend_version"] == "1.27.10"


def test_model_library_routes(server, tmp_path) -> None:
    """The model library sidebar's routes, in ComfyUI's model_manager shapes."""
    loras = tmp_path / "models" / "loras"
    (loras / "style").mkdir(parents=True)
    (loras / "style" / "ink.safetensors").write_bytes(b"12345")
    (loras / ".hidden").write_bytes(b"")
    folders = http("GET", server.url + "/api/experiment/models").json()
    assert {"name": "loras", "folders": [str(loras)]} in folders
    assert {"diffusers", "checkpoints", "clip_vision", "style_models"} <= {f["name"] for f in folders}
    (entry,) = http("GET", server.url + "/api/experiment/models/loras").json()
    assert entry["name"] == "style/ink.safetensors" and entry["pathIndex"] == 0 and entry["size"] == 5
    assert http("GET", server.url + "/api/experiment/models/checkpoints").json() == []
    assert http("GET", server.url + "/api/experiment/models/nope").status == 404


def test_free_runs_between_prompts_not_under_one(server, slow_steps) -> None:
    ws = Socket(server.url, "c1")
    prompt_id = _queue(server, _steps(30))
    while ws.next()["type"] != "progress":
        pass
    assert http("POST", server.url + "/free", {"free_memory": True}).status == 200
    assert ws.until_done(prompt_id)[-2]["type"] == "execution_success"
    # the node outputs were dropped after the prompt: the same prompt runs again, uncached
    messages = ws.until_done(_queue(server, _steps(30)))
    assert [m for m in messages if m["type"] == "execution_cached"][0]["data"]["nodes"] == []


def test_a_stalled_client_does_not_hold_up_the_others(server) -> None:
    """A client that never reads its socket gets megabytes of messages; another client's
    prompts still complete."""
    stalled = Socket(server.url, "stalled")
    big = "x" * 500_000
    for n in range(20):
        _queue(server, {"9": {"class_type": "StubOutput", "inputs": {"value": f"{n}{big}"}}}, client_id="stalled")
    ws = Socket(server.url, "reader")
    done = threading.Event()

    def read() -> None:
        for n in range(10):
            ws.until_done(_queue(server, {"9": {"class_type": "StubOutput", "inputs": {"value": n}}}, client_id="reader"))
        done.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(60)
    assert done.is_set()
    stalled.close()


@pytest.mark.parametrize("prompt", [
    {"1": {"class_type": ["StubOutput"], "inputs": {}}},
    {"1": {"inputs": {}}},
    {"1": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}},
    {"1": {"class_type": "StubOutput", "inputs": {"value": [["a"], None]}}},
    {"1": {"class_type": "StubOutput", "inputs": []}},
    {"1": {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}},
     "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}},
])
def test_malformed_prompts_are_400(server, prompt) -> None:
    reply = http("POST", server.url + "/prompt", {"prompt": prompt})
    assert reply.status == 400 and set(reply.json()) == {"error", "node_errors"}


def test_other_apis_submit_and_wait(server) -> None:
    """What an OpenAI-style module does: submit on the server's loop, await the result, and
    follow the events of a prompt that has no websocket client."""
    import asyncio

    service, loop = server.context.service, server.loop
    seen: list[str] = []
    server.context.hub.listeners.append(lambda event, data, sid: seen.append(event))

    async def generate() -> tuple:
        submitted = await service.submit(ADD)
        record = await service.wait(submitted.body["prompt_id"], timeout=30)
        again = await service.wait(submitted.body["prompt_id"], timeout=1)  # already finished
        return submitted, record, again

    submitted, record, again = asyncio.run_coroutine_threadsafe(generate(), loop).result(30)
    assert submitted.status == 200 and record.entry["outputs"] == {"4": {"values": [7]}}
    assert again.prompt_id == record.prompt_id and record.status_str == "success"
    assert {"execution_start", "executed", "execution_success", "executing"} <= set(seen)
    bad = asyncio.run_coroutine_threadsafe(service.submit({"1": {"class_type": "Nope"}}), loop).result(30)
    assert bad.status == 400 and bad.item is None


def test_shutting_down_refuses_prompts_and_health_says_503(server) -> None:
    server.context.service.accepting = False  # what SIGTERM does first
    reply = http("POST", server.url + "/prompt", {"prompt": ADD})
    assert reply.status == 503 and reply.json()["error"]["type"] == "server_shutting_down"
    reply = http("GET", server.url + "/health")
    assert reply.status == 503 and reply.json()["status"] == "shutting_down"
