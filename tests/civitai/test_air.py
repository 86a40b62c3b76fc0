"""Reference parsing: every accepted form, and errors that list the accepted forms."""

from __future__ import annotations

import pytest

from diffusers_presets.core.civitai.air import format_air, parse_reference
from diffusers_presets.core.errors import PresetsError


@pytest.mark.parametrize("text, model, version, file_id, ecosystem", [
    ("urn:air:sdxl:lora:civitai:328553@368189", 328553, 368189, None, "sdxl"),
    ("URN:AIR:SDXL:LORA:civitai:328553@368189", 328553, 368189, None, "sdxl"),
    ("urn:air:flux1:lycoris:civitai:1@2+3.safetensors", 1, 2, 3, "flux1"),
    ("urn:air:sdxl:lora:civitai:328553@368189.safetensors", 328553, 368189, None, "sdxl"),
    ("air:sdxl:dora:civitai:5@6", 5, 6, None, "sdxl"),
    ("lora:civitai:1@2", 1, 2, None, None),  # a lone type segment is the type, not the ecosystem
    ("civitai:328553@368189", 328553, 368189, None, None),
    ("  328553@368189 ", 328553, 368189, None, None),
    ("328553", 328553, None, None, None),
    ("https://civitai.com/models/328553/some-style?modelVersionId=368189", 328553, 368189, None, None),
    ("https://www.civitai.red/models/328553", 328553, None, None, None),
    ("https://civitai.green/models/328553?version=368189", 328553, 368189, None, None),
    ("https://civitai.com/api/download/models/368189?type=Model&format=SafeTensor&fileId=77", None, 368189, 77, None),
    ("https://civitai.com/api/v1/model-versions/368189", None, 368189, None, None),
    ("https://civitai.red/model-versions/368189", None, 368189, None, None),
])
def test_civitai_forms(text, model, version, file_id, ecosystem) -> None:
    ref = parse_reference(text)
    assert (ref.kind, ref.model_id, ref.version_id, ref.file_id, ref.ecosystem) == (
        "civitai", model, version, file_id, ecosystem)


def test_the_configured_base_url_host_counts_as_civitai(monkeypatch) -> None:
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://127.0.0.1:8123")
    ref = parse_reference("http://127.0.0.1:8123/models/1?modelVersionId=2")
    assert (ref.kind, ref.model_id, ref.version_id) == ("civitai", 1, 2)


def test_urls_hugging_face_and_local_files(monkeypatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert parse_reference("https://example.org/a/b/style.safetensors").url == "https://example.org/a/b/style.safetensors"
    hf = parse_reference("hf://owner/repo@v2/sub/x.safetensors")
    assert (hf.kind, hf.url) == ("huggingface", "https://huggingface.co/owner/repo/resolve/v2/sub/x.safetensors")
    assert parse_reference("https://huggingface.co/owner/repo/blob/main/x.safetensors").url == \
        "https://huggingface.co/owner/repo/resolve/main/x.safetensors"
    assert parse_reference("hf://owner/repo/x.safetensors").url.endswith("/owner/repo/resolve/main/x.safetensors")
    local = parse_reference("styles/my style.safetensors")
    assert (local.kind, local.path) == ("local", "styles/my style.safetensors")


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("urn:air:sdxl:checkpoint:civitai:1@2", "type is 'checkpoint'"),
    ("urn:air:sdxl:lora:civitai:1@2.ckpt", "not safetensors"),
    ("civitai:abc@2", "neither"),
    ("99999999999@1", "out of range"),
    ("https://civitai.com/user/someone", "names no model"),
    ("https://example.org/style.ckpt", "must name a .safetensors"),
    ("http://example.org/style.safetensors", "use https"),
    ("ftp://example.org/style.safetensors", "only http(s)"),
    ("style.pt", "pickle"),
    ("hf://owner/x.safetensors", "hf://"),
])
def test_malformed_references_list_the_accepted_forms(text, why) -> None:
    with pytest.raises(PresetsError) as info:
        parse_reference(text)
    assert info.value.code == "lora_invalid"
    assert why in info.value.message
    assert "urn:air:sdxl:lora:civitai:328553@368189" in info.value.fix and "hf://" in info.value.fix


def test_a_url_with_a_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(PresetsError) as info:
        parse_reference("https://civitai.com/api/download/models/1?token=sekrit123")
    assert "sekrit123" not in str(info.value) and "CIVITAI_API_KEY" in info.value.fix


def test_format_air() -> None:
    assert format_air(1, 2) == "urn:air:other:lora:civitai:1@2"
    assert format_air(1, 2, 3, "sdxl") == "urn:air:sdxl:lora:civitai:1@2+3"
