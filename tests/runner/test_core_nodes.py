"""Headless SaveImage / PreviewImage / LoadImage / Primitive nodes."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
from PIL import Image

from diffusers_presets.core.errors import PresetsError
from diffusers_presets.runner import core_nodes


@pytest.fixture
def dirs(tmp_path):
    core_nodes.set_directories(tmp_path / "out", tmp_path / "in", tmp_path / "tmp")
    (tmp_path / "in").mkdir()
    yield tmp_path
    core_nodes.set_directories(tmp_path.parent / "output", tmp_path.parent / "input", tmp_path.parent / "temp")


def images(batch=2, h=6, w=5):
    return torch.rand(batch, h, w, 3)


def png_chunks(path):
    data = path.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        chunks.append((data[pos + 4:pos + 8].decode(), data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return chunks


def test_save_image_naming_metadata_and_counter(dirs):
    (dirs / "out" / "sub").mkdir(parents=True)
    (dirs / "out" / "sub" / "pic_00007_.png").write_bytes(b"")
    (dirs / "out" / "sub" / "other_00099_.png").write_bytes(b"")
    prompt = {"1": {"class_type": "SaveImage", "inputs": {}}}
    result = core_nodes.SaveImage().save_images(images(), "sub/pic", prompt, {"workflow": {"a": 1}, "extra": [1]})
    assert result == {"ui": {"images": [
        {"filename": "pic_00008_.png", "subfolder": "sub", "type": "output"},
        {"filename": "pic_00009_.png", "subfolder": "sub", "type": "output"},
    ]}}
    saved = dirs / "out" / "sub" / "pic_00008_.png"
    text = [(kind, body) for kind, body in png_chunks(saved) if kind in ("tEXt", "iTXt", "zTXt")]
    assert [kind for kind, _ in text] == ["tEXt", "tEXt", "tEXt"]
    assert [body.split(b"\0")[0] for _, body in text] == [b"prompt", b"workflow", b"extra"]
    assert json.loads(Image.open(saved).text["prompt"]) == prompt
    assert sorted(p.name for p in (dirs / "out" / "sub").iterdir()) == [
        "other_00099_.png", "pic_00007_.png", "pic_00008_.png", "pic_00009_.png"
    ]


def test_save_image_pixels_and_batch_num(dirs):
    tensor = images(batch=2)
    result = core_nodes.SaveImage().save_images(tensor, "b%batch_num%")
    names = [i["filename"] for i in result["ui"]["images"]]
    assert names == ["b0_00001_.png", "b1_00002_.png"]
    pixels = torch.tensor(list(Image.open(dirs / "out" / names[1]).getdata()), dtype=torch.float32).reshape(6, 5, 3)
    assert torch.equal(pixels, torch.clamp(255.0 * tensor[1], 0, 255).to(torch.uint8).float())


def test_save_image_refuses_to_escape_and_leaves_no_partial_file(dirs, monkeypatch):
    for prefix in ("../x", "/etc/x", "a/../../x"):
        with pytest.raises(PresetsError, match="outside the output folder") as info:
            core_nodes.SaveImage().save_images(images(1), prefix)
        assert info.value.code == "input_invalid" and "without '..'" in info.value.fix

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        core_nodes.SaveImage().save_images(images(1), "half")
    assert list((dirs / "out").iterdir()) == []


@pytest.mark.parametrize("prefix", ["nul\x00byte", "lone\udcffsurrogate", "sub/\ud800/x"])
def test_save_image_refuses_unwritable_prefixes_before_writing(dirs, prefix):
    with pytest.raises(PresetsError, match="no file name can hold") as info:
        core_nodes.SaveImage().save_images(images(1), prefix)
    assert info.value.code == "input_invalid"
    assert not (dirs / "out").exists()


def test_preview_image(dirs):
    result = core_nodes.PreviewImage().save_images(images(1))
    (item,) = result["ui"]["images"]
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", item["filename"])
    assert item["type"] == "temp" and (dirs / "tmp" / item["filename"]).is_file()


def test_load_image_mask_and_validation(dirs):
    Image.new("RGBA", (4, 3), (255, 0, 0, 51)).save(dirs / "in" / "a.png")
    Image.new("RGB", (4, 3), (0, 255, 0)).save(dirs / "in" / "b.png")
    (dirs / "in" / "notes.txt").write_text("x")
    assert core_nodes.LoadImage.INPUT_TYPES()["required"]["image"][0] == ["a.png", "b.png"]
    image, mask = core_nodes.LoadImage().load_image("a.png")
    assert image.shape == (1, 3, 4, 3) and mask.shape == (1, 3, 4)
    assert torch.allclose(mask, torch.full((1, 3, 4), 1 - 51 / 255))
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    _, mask = core_nodes.LoadImage().load_image("b.png")
    assert mask.shape == (1, 64, 64) and mask.sum() == 0
    assert core_nodes.LoadImage.IS_CHANGED("a.png") == hashlib.sha256((dirs / "in" / "a.png").read_bytes()).hexdigest()
    assert core_nodes.LoadImage.VALIDATE_INPUTS("a.png") is True
    assert "Invalid image file" in core_nodes.LoadImage.VALIDATE_INPUTS("zzz.png")
    # annotated paths and no traversal
    core_nodes.SaveImage().save_images(images(1), "o")
    assert core_nodes.LoadImage.VALIDATE_INPUTS("o_00001_.png [output]") is True
    assert core_nodes.annotated_path("../../etc/passwd") == (dirs / "in" / "etc" / "passwd").resolve()


@pytest.mark.parametrize("content", [b"not an image at all", None], ids=["garbage", "truncated"])
def test_load_image_of_a_broken_file_is_input_invalid(dirs, content):
    good = dirs / "in" / "good.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(good)
    (dirs / "in" / "bad.png").write_bytes(content if content is not None else good.read_bytes()[:60])
    with pytest.raises(PresetsError, match="'bad.png' cannot be read") as info:
        core_nodes.LoadImage().load_image("bad.png")
    assert info.value.code == "input_invalid" and "valid PNG" in info.value.fix


def test_primitives():
    for name, value in [("PrimitiveInt", 3), ("PrimitiveFloat", 0.5), ("PrimitiveString", "s"),
                        ("PrimitiveStringMultiline", "a\nb"), ("PrimitiveBoolean", True)]:
        cls = core_nodes.NODE_CLASS_MAPPINGS[name]
        assert getattr(cls(), cls.FUNCTION)(value=value) == (value,)
    assert core_nodes.PrimitiveInt.INPUT_TYPES()["required"]["value"][1]["control_after_generate"] is True
