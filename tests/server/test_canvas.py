"""The ComfyUI canvas without ComfyUI, in a real browser.

``python -m runner serve`` runs as a subprocess; Debian's chromium (headless, driven over the
DevTools protocol by tests/server/cdp.py) opens it, an example workflow file is dropped onto the
canvas and Run is clicked. The test checks that the page booted cleanly (template thumbnails
included), that step progress and previews reached the page, that the SaveImage node shows the
image the server wrote, that workflows and settings are saved in the user folder, that the PNG
drops back, and that a returning user in a fresh browser gets the demo workflow, not ComfyUI's
default graph. Both frontend versions the project targets:
1.58.1 (the ``[frontend]`` extra) and 1.27.10 (what ComfyUI 0.3.64 pins; found through
``COMFY_FRONTEND_1_27_ROOT``, which .ci/run sets). A screenshot of each run is written to
``$CANVAS_ARTIFACTS_DIR`` (else the test's tmp folder) and its path printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import pytest

from diffusers_presets.runner.server.frontend import find_web_root
from diffusers_presets.runner.server.settings import ServerSettings
from tests.server.cdp import Browser, Page, find_chromium

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "example_workflows" / "demo_sdxl.json"
SAMPLER, SAVE = 3, 4  # node ids in that workflow

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run does it as root)"
)

# What a fresh single-user install answers 404 to, in ComfyUI too: optional files the
# frontend probes. Any other 404 on the page is a route we miss.
EXPECTED_404 = (
    "/user.css",
    "/api/userdata/user.css",
    "/api/userdata/comfy.templates.json",
    "/api/userdata",  # ?dir=workflows / subgraphs before the user saved any
    "/favicon.ico",  # 1.27.10 asks for it; its icon is /assets/favicon.ico
)


def frontend_root(version: str) -> Optional[Path]:
    if version == "1.58.1":
        root, _ = find_web_root(ServerSettings())
        return root
    folder = os.environ.get("COMFY_FRONTEND_1_27_ROOT")
    if not folder:
        return None
    for candidate in (Path(folder), Path(folder) / "comfyui_frontend_package" / "static"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp_path: Path, web_root: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "runner", "serve",
                "--listen", "127.0.0.1", "--port", str(port),
                "--output-dir", str(tmp_path / "output"),
                "--input-dir", str(tmp_path / "input"),
                "--temp-dir", str(tmp_path / "temp"),
                "--user-directory", str(tmp_path / "user"),
                "--front-end-root", str(web_root),
                "--model", "demo/sdxl=tiny",
            ],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/api/system_stats", timeout=2):
                return process, url, log_path
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# Records the api events the page receives, from the frontend's own api object.
LISTEN = """(() => {
  window.__events = [];
  for (const type of ['status', 'execution_start', 'executing', 'progress', 'progress_state',
                      'executed', 'execution_success', 'execution_error'])
    window.app.api.addEventListener(type, (e) => window.__events.push([type, e.detail]));
  // step previews for a node (what the frontend draws on it): 1.27 names the prompt promptId, 1.58 jobId
  window.app.api.addEventListener('b_preview_with_metadata', ({detail}) => window.__events.push(
    ['b_preview_with_metadata', {node: detail.displayNodeId, prompt_id: detail.promptId ?? detail.jobId}]));
  return true;
})()"""

IMAGE_SHOWN = f"""(() => {{
  const node = window.app.graph.getNodeById({SAVE});
  const img = node && node.imgs && node.imgs[0];
  return img && img.complete && img.naturalWidth > 0 ? [img.src, img.naturalWidth, img.naturalHeight] : null;
}})()"""

# The workflows sidebar's store: what it lists from /api/userdata, then "Save" of the open tab.
SAVE_WORKFLOW = """(async () => {
  const store = window.app.extensionManager.workflow;
  const listed = store.workflows.filter((w) => w.isPersisted).map((w) => w.path);
  await store.saveWorkflow(store.activeWorkflow);
  return {listed, path: store.activeWorkflow.path, persisted: store.activeWorkflow.isPersisted};
})()"""


async def dismiss_dialogs(page: Page) -> None:
    """Close what the first visit opens over the canvas (the template browser) with Escape."""
    for _ in range(5):
        if not await page.evaluate("!!document.querySelector('[role=dialog], .p-dialog-mask')"):
            break
        for kind in ("keyDown", "keyUp"):
            await page.send("Input.dispatchKeyEvent", type=kind, key="Escape", code="Escape", windowsVirtualKeyCode=27)
        await asyncio.sleep(0.3)


# The "Run" button of the top bar (its markup differs between the versions, its label not).
RUN_BUTTON = """(() => {
  const button = [...document.querySelectorAll('button')].find((b) => b.textContent.trim() === 'Run');
  const box = button && button.getBoundingClientRect();
  return box ? [box.x + box.width / 2, box.y + box.height / 2] : null;
})()"""


async def click(page: Page, where: str) -> None:
    """A real mouse click at the centre of the element ``where`` locates."""
    x, y = await page.wait_for(where, timeout=10)
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        await page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


async def drop_file(page: Page, path: Path, nodes: int) -> None:
    """Drop ``path`` onto the middle of the canvas, as a file dragged from the desktop. A dialog
    the first visit opens (the template browser) would take the drop: closed first, and the drop
    tried again if one opened meanwhile."""
    loaded = f"window.app.graph.nodes.length === {nodes} && window.app.graph.getNodeById({SAVE}) !== null"
    for attempt in range(3):
        await dismiss_dialogs(page)
        data = {"items": [], "files": [str(path)], "dragOperationsMask": 1}
        for kind in ("dragEnter", "dragOver", "drop"):
            await page.send("Input.dispatchDragEvent", type=kind, x=640, y=420, data=data)
        try:
            await page.wait_for(loaded, timeout=5)
            return
        except TimeoutError:
            if attempt == 2:
                raise


async def drive(page: Page, url: str, workflow: dict, output: Path, screenshot: Path) -> dict:
    """Boot, drop the workflow, click Run, wait for the image; screenshot; then save the workflow
    and drop the written PNG back. What the page saw, for the assertions."""
    started = time.monotonic()
    await page.send("Page.navigate", url=url + "/")
    # Booted: the app exists and the node defs from /api/object_info are registered.
    await page.wait_for(
        "!!(window.app && window.app.graph && window.app.canvas && window.LiteGraph"
        " && window.LiteGraph.registered_node_types['FixedSampler'])",
        timeout=45,
    )
    booted = time.monotonic() - started
    await page.evaluate(LISTEN)
    thumbnails = await wait_for_thumbnails(page)
    await drop_file(page, WORKFLOW, len(workflow["nodes"]))
    types = await page.evaluate("window.app.graph.nodes.map((n) => [n.id, n.type, (n.widgets || []).length])")
    await click(page, RUN_BUTTON)
    await page.wait_for(
        "window.__events.some(([t]) => t === 'execution_success' || t === 'execution_error')", timeout=120
    )
    image = await page.wait_for(IMAGE_SHOWN, timeout=15)
    ran = time.monotonic() - started - booted
    events = await page.evaluate("window.__events")
    await dismiss_dialogs(page)
    # Fit the graph to the window, as the "fit view" button does, and keep the picture.
    await page.evaluate("window.app.extensionManager.command.execute('Comfy.Canvas.FitView').then(() => true)")
    await asyncio.sleep(0.3)
    await page.screenshot(screenshot)
    saved = await page.evaluate(SAVE_WORKFLOW)
    # The PNG the server wrote carries the workflow: dropped on an empty canvas, it comes back.
    item = next(d for t, d in reversed(events) if t == "executed" and str(d["node"]) == str(SAVE))["output"]["images"][0]
    await page.evaluate("window.app.graph.clear(); true")
    await drop_file(page, output / item["subfolder"] / item["filename"], len(workflow["nodes"]))
    returning = await returning_user(page, url)
    return {"booted": booted, "types": types, "image": image, "events": events, "saved": saved, "ran": ran,
            "returning": returning, "thumbnails": thumbnails}


async def wait_for_thumbnails(page: Page, timeout: float = 15) -> list[tuple[str, int]]:
    """The first visit opens the template browser on this pack's example workflows: the
    thumbnails it fetched (``example_workflows/<name>.jpg``), once one has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        found = [(u, s) for u, s in page.responses() if "/api/workflow_templates/" in u and u.endswith(".jpg")]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def returning_user(page: Page, url: str) -> dict:
    """A returning user in a fresh browser profile: the tutorial is done (a server-side setting)
    and the browser holds no workflow, so the frontend opens ComfyUI's default graph, whose
    nodes this server lacks. The server's extension loads the demo workflow instead: no
    "missing nodes" dialog, the pack's nodes on the canvas."""
    request = urllib.request.Request(url + "/api/settings/Comfy.TutorialCompleted", data=b"true", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    await page.evaluate("localStorage.clear(); true")
    fresh = await page.browser.new_page()  # a new tab: no sessionStorage, and no "leave page?" prompt
    await fresh.send("Page.navigate", url=url + "/")
    await fresh.wait_for("!!(window.app && window.app.graph && window.app.graph.nodes.length > 0)", timeout=45)
    await asyncio.sleep(1.5)  # the dialog, if any, opens after the graph has loaded
    seen = await fresh.evaluate("""({
      types: window.app.graph.nodes.map((n) => n.type),
      dialogs: [...document.querySelectorAll('[role=dialog], .p-dialog')].map((d) => d.innerText.slice(0, 200)),
    })""")
    return {**seen, "page": fresh}


@pytest.mark.parametrize("version", ["1.58.1", "1.27.10"])
def test_canvas_runs_an_example_workflow(version: str, tmp_path: Path, tiny_models: dict) -> None:
    web_root = frontend_root(version)
    if web_root is None:
        pytest.skip(
            f"comfyui-frontend-package {version} is not installed"
            + (" (pip install '.[frontend]')" if version == "1.58.1" else
               " (pip install --no-deps --target DIR comfyui-frontend-package==1.27.10, then COMFY_FRONTEND_1_27_ROOT=DIR)")
        )
    artifacts = Path(os.environ.get("CANVAS_ARTIFACTS_DIR") or tmp_path)
    screenshot = artifacts / f"canvas-{version}.png"
    workflow = json.loads(WORKFLOW.read_text())
    user = tmp_path / "user" / "default"
    (user / "workflows").mkdir(parents=True)
    (user / "workflows" / "saved before.json").write_text(WORKFLOW.read_text())
    process, url, log_path = start_server(tmp_path, web_root)

    async def run() -> tuple[dict, Page]:
        async with Browser(CHROMIUM, tmp_path / "chromium" / "profile") as browser:
            page = await browser.new_page()
            try:
                return await drive(page, url, workflow, tmp_path / "output", screenshot), page
            except BaseException:
                await page.screenshot(screenshot)  # what the page showed when it failed
                raise
            finally:
                print(f"canvas screenshot ({version}): {screenshot}")

    try:
        result, page = asyncio.run(run())
    finally:
        stop_server(process)
    context = f"server log {log_path}, screenshot {screenshot}"
    print(f"canvas {version}: booted in {result['booted']:.1f} s, image after {result['ran']:.1f} s more")

    # The workflow loaded as real nodes (not "missing node" placeholders).
    assert [t for _, t, _ in result["types"]] == ["PresetLoader", "VramProfile", "FixedSampler", "SaveImage"]
    assert all(widgets > 0 for _, _, widgets in result["types"]), result["types"]

    events = result["events"]
    kinds = [kind for kind, _ in events]
    assert "execution_error" not in kinds, (events, context)
    # Step progress reached the page for the sampler node, up to the last step.
    progress = [data for kind, data in events if kind == "progress"]
    assert progress and all(str(p["node"]) == str(SAMPLER) for p in progress), (progress, context)
    assert progress[-1]["value"] == progress[-1]["max"] > 1, progress

    # Step previews reached the page for the sampler node, as the frontend draws them on it.
    previews = [data for kind, data in events if kind == "b_preview_with_metadata"]
    prompt_id = progress[-1]["prompt_id"]
    assert previews and all(p == {"node": str(SAMPLER), "prompt_id": prompt_id} for p in previews), (previews, context)

    # The template browser's thumbnails are the pack's, and none is missing.
    thumbnails = result["thumbnails"]
    assert thumbnails and all(status == 200 for _, status in thumbnails), (thumbnails, context)

    # A returning user's first screen is the demo workflow, not ComfyUI's default graph.
    returning = result["returning"]
    assert "PresetLoader" in returning["types"] and "KSampler" not in returning["types"], (returning, context)
    assert not [d for d in returning["dialogs"] if "missing" in d.lower()], (returning, context)

    # SaveImage shows the image the server wrote, fetched through /api/view.
    executed = [data for kind, data in events if kind == "executed" and str(data["node"]) == str(SAVE)]
    assert executed, (kinds, context)
    item = executed[-1]["output"]["images"][0]
    written = tmp_path / "output" / item["subfolder"] / item["filename"]
    assert written.is_file(), (item, context)
    src, width, height = result["image"]
    assert urlsplit(src).path == "/api/view" and f"filename={item['filename']}" in src, src
    assert width > 0 and height > 0

    # The user's workflows and settings live in the user folder, as in ComfyUI.
    saved = result["saved"]
    assert "workflows/saved before.json" in saved["listed"], saved
    assert saved["persisted"] and saved["path"].startswith("workflows/"), saved
    on_disk = json.loads((user / saved["path"]).read_text())
    assert sorted(n["type"] for n in on_disk["nodes"]) == sorted(n["type"] for n in workflow["nodes"])
    assert json.loads((user / "comfy.settings.json").read_text())["Comfy.InstalledVersion"] == version

    # No failed route and no error in the console (beyond the 404s ComfyUI itself gives).
    pages = (page, returning["page"])
    responses = [r for p in pages for r in p.responses()]
    server = [(u, s) for u, s in responses if u.startswith(url)]
    assert not [(u, s) for u, s in server if s >= 500], (server, context)
    unexpected = [(u, s) for u, s in server if s >= 400 and not (s == 404 and _optional(urlsplit(u).path))]
    assert not unexpected, "\n".join([f"{s} {u}" for u, s in unexpected] + [context])
    errors = [e for p in pages for e in p.console_errors(ignore=lambda text: _expected_noise(text, version))]
    assert not errors, "\n".join(errors + [context])


def _optional(path: str) -> bool:
    return path in EXPECTED_404


def _expected_noise(text: str, version: str) -> bool:
    """Console errors that are not about our server: external hosts the page calls (offline
    here), the allowed 404s (checked above from the network side), and 1.27.10's own bug."""
    if "api.comfy.org" in text or "ERR_NAME_NOT_RESOLVED" in text or "ERR_INTERNET_DISCONNECTED" in text:
        return True
    if text.startswith("Failed to load resource: the server responded with a status of 404"):
        return True
    return version == "1.27.10" and "Cannot read properties of undefined (reading 'id')" in text
