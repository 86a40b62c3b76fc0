"""Many clients at once, and a server killed with SIGKILL: no prompt lost, none run twice."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from PIL import Image
from server_helpers import Socket, http

ROOT = Path(__file__).resolve().parents[2]


def _copy_prompt(prefix: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "tile.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def _tile(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 30, 90)).save(folder / "tile.png")


def test_eight_clients_25_prompts_each(make_server, tmp_path: Path) -> None:
    _tile(tmp_path / "input")
    server = make_server()
    done: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            ws = Socket(server.url, f"client-{index}")
            ids = []
            for n in range(25):
                reply = http("POST", server.url + "/prompt",
                             {"prompt": _copy_prompt(f"c{index}/p{n}"), "client_id": f"client-{index}"})
                ids.append(reply.json()["prompt_id"])
            finished = []
            while len(finished) < len(ids):
                message = ws.next()
                if message["type"] == "executing" and message["data"]["node"] is None:
                    finished.append(message["data"]["prompt_id"])
            assert finished == ids  # each client's prompts ran in the order it queued them
            done[index] = ids
            ws.close()
        except BaseException as ex:  # noqa: BLE001 - reported by the main thread
            errors.append(ex)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    history = http("GET", server.url + "/history").json()
    assert len(history) == 200 and set(history) == {pid for ids in done.values() for pid in ids}
    for entry in history.values():
        assert entry["status"]["status_str"] == "success"
        (image,) = entry["outputs"]["2"]["images"]
        assert (tmp_path / "output" / image["subfolder"] / image["filename"]).is_file()
    files = sorted(p.relative_to(tmp_path / "output").as_posix() for p in (tmp_path / "output").rglob("*.png"))
    assert files == sorted(f"c{i}/p{n}_00001_.png" for i in range(8) for n in range(25))  # none run twice


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "--port", str(port), "--output-dir", str(tmp_path / "output"),
         "--input-dir", str(tmp_path / "input"), "--user-directory", str(tmp_path / "user")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http("GET", f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server did not start: {process.stderr.read().decode()[-2000:]}")


def test_kill_9_with_prompts_pending_then_restart_runs_them_all(tmp_path: Path) -> None:
    _tile(tmp_path / "input")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(tmp_path, port)
    try:
        assert http("GET", url + "/health").json()["torch_loaded"] is False  # answers before torch loads
        ids = [http("POST", url + "/prompt", {"prompt": _copy_prompt(f"k/p{n}")}).json()["prompt_id"] for n in range(10)]
        queue = http("GET", url + "/queue").json()
        waiting = len(queue["queue_pending"]) + len(queue["queue_running"])
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
        process.stderr.close()
    assert waiting >= 9  # the first prompt was still loading torch
    process = _start(tmp_path, port)
    try:
        deadline = time.monotonic() + 60
        while len(history := http("GET", url + "/history").json()) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set(history) == set(ids)
        assert all(entry["status"]["status_str"] == "success" for entry in history.values())
        files = sorted(p.name for p in (tmp_path / "output" / "k").glob("*.png"))
        assert files == sorted(f"p{n}_00001_.png" for n in range(10))
        image = Image.open(io.BytesIO(http("GET", url + "/view?filename=p3_00001_.png&subfolder=k").body))
        assert image.size == (64, 64)
        # SIGTERM: a clean exit
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()
        process.stderr.close()
