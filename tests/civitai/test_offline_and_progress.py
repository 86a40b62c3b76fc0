"""Offline fails fast (no retries when nothing can be reached), passing faults are still retried,
and downloads report bytes. Real sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from diffusers_presets.core.civitai import client, download, transport
from diffusers_presets.core.civitai.download import DownloadSpec, download_file, format_progress
from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.lora.resolve import resolve_lora
from tests.fake_civitai import safetensors_bytes


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def attempts(monkeypatch) -> list[str]:
    """Every HTTP request the client and the downloader open, by URL."""
    seen: list[str] = []
    real = transport.open_url

    def counting(url, headers, timeout):  # noqa: ANN001, ANN202
        seen.append(url)
        return real(url, headers, timeout)

    monkeypatch.setattr(client, "open_url", counting)
    monkeypatch.setattr(download, "open_url", counting)
    return seen


def test_a_refused_connection_to_civitai_fails_after_one_attempt(civitai_env, host, attempts, monkeypatch) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(PresetsError) as info:
        resolve_lora("urn:air:sdxl:lora:civitai:328553@368189")
    assert info.value.code == "civitai_unavailable"
    assert "offline" in info.value.message and "refused" in info.value.message.lower()
    assert "connect to the network" in info.value.fix
    assert len(attempts) == 1


def test_an_unresolvable_host_fails_after_one_attempt(civitai_env, host, attempts, monkeypatch) -> None:
    real = socket.getaddrinfo

    def no_dns(name, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if name == "civitai.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://civitai.invalid")
    with pytest.raises(PresetsError) as info:
        resolve_lora("328553@368189")
    assert info.value.code == "civitai_unavailable" and "does not resolve" in info.value.message
    assert len(attempts) == 1


def test_a_refused_download_fails_after_one_attempt(civitai_env, host, attempts, tmp_path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/files/style.safetensors"
    with pytest.raises(PresetsError) as info:
        download_file(DownloadSpec(url=url, what="the test LoRA"), tmp_path / "style.safetensors")
    assert info.value.code == "download_failed" and "offline" in info.value.message
    assert len(attempts) == 1


def test_a_server_that_drops_connections_is_still_retried(civitai_env, host, attempts, monkeypatch) -> None:
    """Accepts, then closes at once (a reset, not offline): retried up to BACKOFF.attempts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drop() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            connection.close()

    thread = threading.Thread(target=drop, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("CIVITAI_BASE_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(PresetsError) as info:
            resolve_lora("328553@368189")
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert info.value.code == "civitai_unavailable"
    assert len(attempts) == transport.BACKOFF.attempts > 1


def test_progress_text() -> None:
    assert format_progress("x.safetensors", 12_300_000, 144_000_000, 35_100_000) == \
        "downloading x.safetensors: 12.3 MB of 144.0 MB (35.1 MB/s)"
    assert format_progress("x.safetensors", 2_500, None, None) == "downloading x.safetensors: 2.5 kB"
    assert format_progress("big.safetensors", 6_460_000_000, 6_940_000_000, 2e6) == \
        "downloading big.safetensors: 6.46 GB of 6.94 GB (2.0 MB/s)"


def test_a_download_logs_bytes_and_feeds_the_host_bar(civitai_env, host, caplog) -> None:
    data = safetensors_bytes(1_500_000)
    civitai_env.add_lora(21, 210, data, name="bytes.safetensors")
    caplog.set_level(logging.INFO, logger="diffusers_presets.core.civitai.download")
    resolve_lora("21@210")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("downloading bytes-v210")]
    assert lines and lines[-1].startswith("downloading bytes-v210.safetensors: 1.5 MB of 1.5 MB (")
    assert lines[-1].endswith("/s)") and not any("step" in line for line in lines)
    assert host.progress_events[-1] == (len(data), len(data))  # raw bytes for ComfyUI's step-based bar
