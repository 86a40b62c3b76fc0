"""Resolving and downloading LoRAs against the fake Civitai: the happy paths, offline reuse,
and every fault the issue lists. Real HTTP on 127.0.0.1, real files under tmp_path."""

from __future__ import annotations

import hashlib
import os
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from diffusers_presets.core.civitai.download import sanitize_filename
from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.lora.library import SIDECAR_SUFFIX
from diffusers_presets.core.lora.resolve import resolve_lora
from tests.fake_civitai import KEY, Faults, safetensors_bytes


def loras_dir(host):
    return host.models_dir() / "loras"


def final_files(host):
    folder = loras_dir(host)
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_by_air_downloads_once_writes_a_sidecar_and_then_works_offline(civitai_env, host, caplog) -> None:
    data = safetensors_bytes(300_000)
    civitai_env.add_lora(328553, 368189, data, name="pixel style.safetensors", base_model="Illustrious",
                         trained_words=["pixel art", "8-bit"])
    caplog.set_level("DEBUG")
    lora = resolve_lora("urn:air:sdxl:lora:civitai:328553@368189")
    assert lora.path.parent == loras_dir(host) and lora.path.name == "pixel style-v368189.safetensors"
    assert lora.path.read_bytes() == data and lora.sha256 == hashlib.sha256(data).hexdigest()
    assert (lora.base_model, lora.trained_words) == ("Illustrious", ("pixel art", "8-bit"))
    assert lora.air == "urn:air:sdxl:lora:civitai:328553@368189" and lora.version_id == 368189
    sidecar = json.loads((lora.path.parent / (lora.path.name + SIDECAR_SUFFIX)).read_text())
    assert sidecar["sha256"] == lora.sha256 and sidecar["version_id"] == 368189 and sidecar["retrieved_at"]
    assert sidecar["trained_words"] == ["pixel art", "8-bit"] and sidecar["source_url"].endswith("/368189")
    assert not [n for n in final_files(host) if n.endswith(".part")]
    assert host.progress_events and host.progress_events[-1] == (len(data), len(data))

    civitai_env.stop()  # the next run needs no network at all
    again = resolve_lora("https://civitai.com/models/328553?modelVersionId=368189")
    assert again.path == lora.path and again.trained_words == lora.trained_words
    assert civitai_env.downloads == {368189: 1}


def test_a_bare_model_id_uses_the_default_version_and_pins_it(civitai_env, host) -> None:
    civitai_env.add_lora(7, 70, safetensors_bytes(1000, seed=1), default=False)
    civitai_env.add_lora(7, 71, safetensors_bytes(1000, seed=2), default=True)
    lora = resolve_lora("7")
    assert lora.version_id == 71 and lora.air == "urn:air:sdxl:lora:civitai:7@71"
    civitai_env.stop()  # offline: the newest local version of the model
    assert resolve_lora("civitai:7").path == lora.path


def test_login_required_without_and_with_a_key(civitai_env, host, monkeypatch, caplog) -> None:
    civitai_env.add_lora(1, 10, safetensors_bytes(5000), faults=Faults(require_key=True))
    caplog.set_level("DEBUG")
    with pytest.raises(PresetsError) as info:
        resolve_lora("1@10")
    assert info.value.code == "civitai_auth_required" and "CIVITAI_API_KEY" in info.value.fix
    assert "logged in" in info.value.message
    assert final_files(host) == []

    monkeypatch.setenv("CIVITAI_API_KEY", KEY)
    before = len(civitai_env.requests)
    lora = resolve_lora("1@10")
    assert lora.path.is_file()
    downloads = [h for _, path, h in civitai_env.requests[before:] if path.startswith("/api/")]
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in downloads)
    assert civitai_env.key_leaks() == []  # not in a URL, not sent on to the storage host
    assert KEY not in caplog.text
    assert KEY not in (lora.path.parent / (lora.path.name + SIDECAR_SUFFIX)).read_text()


def test_a_refused_key_says_so_and_the_key_file_is_read(civitai_env, host, monkeypatch, tmp_path) -> None:
    civitai_env.add_lora(1, 10, safetensors_bytes(5000), faults=Faults(require_key=True))
    monkeypatch.setenv("CIVITAI_API_KEY", "wrong-key-123")
    with pytest.raises(PresetsError) as info:
        resolve_lora("1@10")
    assert info.value.code == "civitai_auth_required" and "refused the API key" in info.value.message
    assert "wrong-key-123" not in str(info.value)
    monkeypatch.delenv("CIVITAI_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv("CIVITAI_API_KEY_FILE", str(key_file))
    assert resolve_lora("1@10").path.is_file()


@pytest.mark.parametrize("faults, code, text", [
    (Faults(early_access="2026-09-01T00:00:00.000Z"), "civitai_early_access", "2026-09-01"),
    (Faults(archived=True), "civitai_archived", "archived"),
    (Faults(api_statuses=[404]), "civitai_not_found", "no model version"),
    (Faults(download_statuses=[429] * 10), "civitai_rate_limited", "rate-limited"),
    (Faults(download_statuses=[503] * 10), "civitai_unavailable", "HTTP 503"),
])
def test_civitai_failures_map_to_clear_errors(civitai_env, host, faults, code, text) -> None:
    civitai_env.add_lora(2, 20, safetensors_bytes(5000), faults=faults)
    with pytest.raises(PresetsError) as info:
        resolve_lora("urn:air:sdxl:lora:civitai:2@20")
    assert info.value.code == code and text in str(info.value)
    assert final_files(host) == []


def test_unknown_version_and_wrong_model(civitai_env, host) -> None:
    civitai_env.add_lora(3, 30, safetensors_bytes(5000))
    with pytest.raises(PresetsError) as info:
        resolve_lora("3@31")
    assert info.value.code == "civitai_not_found"
    with pytest.raises(PresetsError) as info:
        resolve_lora("4@30")
    assert info.value.code == "lora_invalid" and "belongs to model 3" in info.value.message


def test_a_checkpoint_is_not_a_lora(civitai_env, host) -> None:
    civitai_env.add_lora(5, 50, safetensors_bytes(5000), model_type="Checkpoint")
    with pytest.raises(PresetsError) as info:
        resolve_lora("5@50")
    assert info.value.code == "lora_invalid" and "Checkpoint" in info.value.message


@pytest.mark.parametrize("statuses", [[429], [500, 500]])
def test_retries_then_success(civitai_env, host, statuses) -> None:
    data = safetensors_bytes(20_000)
    civitai_env.add_lora(6, 60, data, faults=Faults(download_statuses=list(statuses), retry_after="0"))
    assert resolve_lora("6@60").path.read_bytes() == data
    assert civitai_env.downloads[60] == len(statuses) + 1


def test_api_5xx_is_retried(civitai_env, host) -> None:
    civitai_env.add_lora(6, 61, safetensors_bytes(2000), faults=Faults(api_statuses=[502, 500]))
    assert resolve_lora("6@61").path.is_file()


def test_cuts_at_random_offsets_resume_with_little_refetched(civitai_env, host) -> None:
    data = safetensors_bytes(3_000_000, seed=3)
    cuts = sorted(random.Random(4).sample(range(1000, len(data) - 1000), 3))
    civitai_env.add_lora(8, 80, data, faults=Faults(cut_at=list(cuts)))
    lora = resolve_lora("8@80")
    assert lora.sha256 == hashlib.sha256(data).hexdigest() and lora.path.read_bytes() == data
    assert civitai_env.downloads[80] == 1  # the redirect was resolved once; resumes hit storage
    assert civitai_env.storage_bytes == len(data)  # nothing fetched twice
    ranges = [h.get("Range") for _, path, h in civitai_env.requests if path.startswith("/storage/")]
    assert ranges == [None] + [f"bytes={cut}-" for cut in cuts]


def test_a_server_that_ignores_range_restarts_cleanly(civitai_env, host) -> None:
    data = safetensors_bytes(200_000, seed=5)
    civitai_env.add_lora(9, 90, data, faults=Faults(cut_at=[50_000], ignore_range=True))
    assert resolve_lora("9@90").path.read_bytes() == data


def test_a_wrong_hash_is_rejected_and_nothing_is_left(civitai_env, host) -> None:
    civitai_env.add_lora(11, 110, safetensors_bytes(10_000), faults=Faults(wrong_hash=True))
    with pytest.raises(PresetsError) as info:
        resolve_lora("11@110")
    assert info.value.code == "download_failed" and "SHA256" in info.value.message
    assert final_files(host) == []  # no final file, no .part, no sidecar
    assert civitai_env.downloads[110] == 2  # one fresh retry before giving up


def test_an_html_login_page_is_refused(civitai_env, host) -> None:
    civitai_env.add_lora(12, 120, safetensors_bytes(10_000), faults=Faults(html=True))
    with pytest.raises(PresetsError) as info:
        resolve_lora("12@120")
    assert info.value.code == "civitai_auth_required" and "web page" in info.value.message
    assert final_files(host) == []


def test_a_pickle_payload_is_refused(civitai_env, host) -> None:
    civitai_env.add_lora(13, 130, b"PK\x03\x04" + b"\x00" * 5000)
    with pytest.raises(PresetsError) as info:
        resolve_lora("13@130")
    assert info.value.code == "lora_invalid" and "pickle" in info.value.message
    assert final_files(host) == []


def test_path_traversal_in_names_stays_in_the_loras_folder(civitai_env, host) -> None:
    civitai_env.add_lora(14, 140, safetensors_bytes(5000), name="../../evil.safetensors",
                         faults=Faults(content_disposition="../../../etc/evil.safetensors"))
    lora = resolve_lora("14@140")
    assert lora.path.parent == loras_dir(host) and lora.path.name == "evil-v140.safetensors"
    assert not (host.models_dir().parent / "evil.safetensors").exists()
    assert sanitize_filename("..\\..\\CON.safetensors") == "lora_CON.safetensors"
    assert sanitize_filename("a\x00b:c.safetensors") == "a_b_c.safetensors"


def test_a_stalled_server_times_out(civitai_env, host, monkeypatch) -> None:
    from diffusers_presets.core.civitai import download

    monkeypatch.setattr(download, "STALL_TIMEOUT_S", 0.3)
    civitai_env.add_lora(15, 150, safetensors_bytes(100_000), faults=Faults(stall_after=100))
    with pytest.raises(PresetsError) as info:
        resolve_lora("15@150")
    assert info.value.code == "download_failed" and "stopped sending data" in info.value.message
    assert not [n for n in final_files(host) if n.endswith(".safetensors")]


def test_two_loaders_asking_at_once_download_once(civitai_env, host) -> None:
    data = safetensors_bytes(2_000_000, seed=6)
    civitai_env.add_lora(16, 160, data)
    results, errors = [], []

    def load() -> None:
        try:
            results.append(resolve_lora("16@160"))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and len({r.path for r in results}) == 1 and len(results) == 3
    assert civitai_env.storage_bytes == len(data)


def test_plain_and_hugging_face_urls(civitai_env, host, monkeypatch, tmp_path) -> None:
    from huggingface_hub import constants

    data = safetensors_bytes(4000, seed=7)
    civitai_env.plain_files["files/my style.safetensors"] = data
    other_host = civitai_env.base_url.replace("127.0.0.1", "localhost")  # not the Civitai host
    lora = resolve_lora(f"{other_host}/files/my%20style.safetensors")
    assert lora.path.read_bytes() == data and lora.path.name.startswith("my style-")
    assert lora.base_model == "" and lora.source_url.endswith("my%20style.safetensors")
    with pytest.raises(PresetsError) as info:
        resolve_lora(f"{other_host}/files/missing.safetensors")
    assert info.value.code == "lora_not_found"
    # Hugging Face files go through huggingface_hub: its cache, its token, its offline mode.
    civitai_env.plain_files["owner/repo/resolve/main/sub/hf.safetensors"] = data
    monkeypatch.setenv("HF_ENDPOINT", other_host)
    monkeypatch.setenv("HF_TOKEN", "hf-token-1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hf = resolve_lora("hf://owner/repo/sub/hf.safetensors")
    assert hf.sha256 == lora.sha256 and hf.path.read_bytes() == data
    assert hf.path.is_relative_to(tmp_path / "hub") and "models--owner--repo" in str(hf.path)
    hf_headers = [h for _, path, h in civitai_env.requests if path.startswith("/owner/")]
    assert hf_headers and all(h.get("Authorization") == "Bearer hf-token-1" for h in hf_headers)
    assert host.progress_events[-1] == (len(data), len(data))  # the hub's progress reaches the host
    with pytest.raises(PresetsError) as info:
        resolve_lora(f"{other_host}/owner/repo/resolve/main/missing.safetensors")
    assert info.value.code == "lora_not_found" and "missing.safetensors" in info.value.message
    civitai_env.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_lora(f"{other_host}/owner/repo/resolve/main/sub/hf.safetensors").path == hf.path  # offline


def test_catalog_path_is_the_download_target(civitai_env, host) -> None:
    civitai_env.add_lora(17, 170, safetensors_bytes(3000))
    lora = resolve_lora("17@170", dest="styles/catalog-style.safetensors")
    assert lora.path == loras_dir(host) / "styles" / "catalog-style.safetensors"
    models_relative = resolve_lora("17@170", dest="loras/styles/catalog-style.safetensors")
    assert models_relative.path == lora.path


# Two separate processes (two ComfyUI/runner instances sharing a models folder) resolve the
# same LoRA at the same moment; a start file makes them begin together.
TWO_PROCESSES_CHILD = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
import runner
runner.load_pack()
from diffusers_presets.core.lora.resolve import resolve_lora
Path(sys.argv[1] + ".ready").touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
print(resolve_lora("17@170").path)
"""


def test_two_processes_asking_at_once_download_once(civitai_env, host, tmp_path) -> None:
    data = safetensors_bytes(24_000_000, seed=8)
    civitai_env.add_lora(17, 170, data)
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "child.py"
    script.write_text(TWO_PROCESSES_CHILD.format(root=root))
    go = tmp_path / "go"
    env = {**os.environ, "MODEL_BASE_PATH": str(host.models_root)}
    children = [subprocess.Popen([sys.executable, str(script), str(tmp_path / f"child{i}"), str(go)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"child{i}.ready").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), [err[-2000:] for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1 and Path(paths.pop()).read_bytes() == data
    assert civitai_env.storage_bytes == len(data)  # one download between the two processes
