"""``python -m runner serve`` over real HTTP and WebSocket, in a subprocess (as a client sees it).

    python bench/server_bench.py [--prompts N] [--clients 8]

Reports:
- start-up: process start to the first answer of ``GET /system_stats``;
- idle RSS: the server's resident memory before any prompt (torch not loaded);
- cached round trip p50: POST /prompt of a prompt whose nodes are all cached, until its
  ``executing {node: null}`` arrives on the socket;
- trivial round trip p50: LoadImage → SaveImage of a 64 px image with a new filename prefix
  each time (a real PNG write per prompt);
- throughput: ``--clients`` clients, each queueing ``--prompts`` cached prompts at once and
  reading its socket until all are done (prompts/s over all clients);
- RSS after 10 and after 1,000 trivial prompts (bounded memory: history lives in SQLite).

ComfyUI 0.3.64 on the same kind of run: 1.4 ms cached, 3.3 ms trivial, ~290 prompts/s,
5.8 s start-up, 513 MB idle.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import websocket
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def prompt(prefix: str, save: bool) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "bench.png"}},
        "2": {"class_type": "SaveImage" if save else "PreviewImage",
              "inputs": {"images": ["1", 0], **({"filename_prefix": prefix} if save else {})}},
    }


class Client:
    """One websocket and one keep-alive HTTP connection, like a browser tab."""

    def __init__(self, base: str, client_id: str) -> None:
        self.client_id = client_id
        self.http = http.client.HTTPConnection(base.split("//")[1], timeout=120)
        self.ws = websocket.create_connection(base.replace("http://", "ws://") + f"/ws?clientId={client_id}", timeout=120)

    def queue(self, body: dict) -> str:
        payload = json.dumps({"prompt": body, "client_id": self.client_id})
        self.http.request("POST", "/prompt", payload, {"Content-Type": "application/json"})
        return json.loads(self.http.getresponse().read())["prompt_id"]

    def wait(self, prompt_ids: set[str]) -> None:
        while prompt_ids:
            raw = self.ws.recv()
            if isinstance(raw, bytes):
                continue
            message = json.loads(raw)
            if message["type"] == "executing" and message["data"]["node"] is None:
                prompt_ids.discard(message["data"]["prompt_id"])

    def round_trip(self, body: dict) -> float:
        started = time.perf_counter()
        self.wait({self.queue(body)})
        return (time.perf_counter() - started) * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=50, help="prompts per client in the throughput run")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="server-bench-"))
    (work / "input").mkdir()
    Image.new("RGB", (64, 64), (120, 40, 200)).save(work / "input" / "bench.png")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "serve", "--port", str(port), "--output-dir", str(work / "output"),
         "--input-dir", str(work / "input"), "--temp-dir", str(work / "temp"), "--user-directory", str(work / "user")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                get(base + "/system_stats")
                break
            except OSError:
                time.sleep(0.02)
        startup = time.perf_counter() - started
        rss = lambda: psutil.Process(process.pid).memory_info().rss / 2**20  # noqa: E731
        idle = rss()
        client = Client(base, "bench")
        client.round_trip(prompt("", save=False))  # loads torch, fills the cache
        cached = [client.round_trip(prompt("", save=False)) for _ in range(200)]
        trivial = [client.round_trip(prompt(f"t/{n}", save=True)) for n in range(10)]
        rss_10 = rss()
        trivial += [client.round_trip(prompt(f"t/{n}", save=True)) for n in range(10, 1000)]
        rss_1000 = rss()

        clients = [Client(base, f"c{i}") for i in range(args.clients)]

        def burst(c: Client) -> None:
            c.wait({c.queue(prompt("", save=False)) for _ in range(args.prompts)})

        threads = [threading.Thread(target=burst, args=(c,)) for c in clients]
        t0 = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        throughput = args.clients * args.prompts / (time.perf_counter() - t0)
        print(f"start-up to /system_stats: {startup:.2f} s")
        print(f"idle RSS (torch not loaded): {idle:.0f} MB")
        print(f"cached round trip p50: {statistics.median(cached):.2f} ms (p90 {statistics.quantiles(cached, n=10)[-1]:.2f})")
        print(f"trivial round trip p50: {statistics.median(trivial):.2f} ms (LoadImage → SaveImage, 64 px PNG)")
        print(f"throughput, {args.clients} clients × {args.prompts} cached prompts: {throughput:.0f} prompts/s")
        print(f"RSS after 10 trivial prompts: {rss_10:.0f} MB; after 1,000: {rss_1000:.0f} MB")
    finally:
        process.terminate()
        process.wait(30)


if __name__ == "__main__":
    main()
