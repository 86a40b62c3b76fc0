"""Model configurations (presets as configurations): storage in the user presets folder, the
same validation as preset files, shipped presets behind an override layer, one default per model
and per base type, concurrent writers, and the `presets add|edit|rm|default` CLI."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

from diffusers_presets.core.configurations import Store, model_id_of, parse_base_model, source_of
from diffusers_presets.core.errors import PresetsError
from diffusers_presets.core.presets import registry
from diffusers_presets.runner.cli import main


@pytest.fixture
def store(host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("PRESETS_DIR", str(tmp_path / "user"))
    return Store()


def test_fields_map_onto_a_preset_file(store: Store) -> None:
    config = store.create({"base_model": "pony", "name": "My pony", "model_id": "tiny", "steps": 28, "cfg_scale": 6.5,
                           "sampler": "dpmpp_2m", "clip_skip": 2, "resolution_width": 832, "resolution_height": 1216,
                           "batch_size": 2, "seed": 7, "additional_params": {"guidance_rescale": 0.3},
                           "description": "mine"})
    assert config["id"] == "sdxl/My-pony" and config["base_model"] == "pony" and config["model_id"] == "tiny"
    written = yaml.safe_load((store.folder / "sdxl" / "My-pony.yaml").read_text())
    assert written == {"family": "sdxl", "extends": "sdxl/illustrious", "lineage": "pony", "description": "mine",
                       "steps": 28, "cfg": 6.5, "sampler": "dpmpp_2m", "clip_skip": 2, "width": 832, "height": 1216,
                       "call_args": {"guidance_rescale": 0.3}, "source": {"tiny": True}}
    preset = registry().get("sdxl/My-pony")  # visible to every reader without a restart
    assert (preset.steps, preset.cfg, preset.sampler, preset.width, preset.lineage) == (28, 6.5, "dpmpp_2m", 832, "pony")
    assert (config["batch_size"], config["seed"], config["name"]) == (2, 7, "My pony")  # index fields
    assert config["created_at"] and config["updated_at"]


def test_edits_are_visible_through_the_registry_without_restart(store: Store) -> None:
    store.create({"base_model": "flux_dev", "name": "fast", "model_id": "tiny", "steps": 8})
    assert registry().get("flux/fast").steps == 8
    store.update("flux/fast", {"steps": 9})
    assert registry().get("flux/fast").steps == 9
    store.delete("flux/fast")
    with pytest.raises(PresetsError) as missing:
        registry().get("flux/fast")
    assert missing.value.code == "preset_not_found"


@pytest.mark.parametrize("body, field", [
    ({"steps": 0}, "steps"), ({"steps": "ten"}, "steps"), ({"steps": 10**12}, "steps"),
    ({"cfg_scale": 1e9}, "cfg_scale"), ({"sampler": "dpmpp_2m"}, "sampler"),  # flow-matching flux: euler only
    ({"resolution_width": 72}, "resolution_width"), ({"seed": -2}, "seed"), ({"batch_size": 0}, "batch_size"),
    ({"scheduler": "karras"}, "scheduler"), ({"colour": "red"}, "colour"), ({"base_model": "sd15"}, "base_model"),
])
def test_invalid_values_name_the_field_and_change_nothing(store: Store, body: dict, field: str) -> None:
    store.create({"base_model": "flux", "name": "x", "model_id": "tiny", "steps": 8})
    before = (store.folder / "flux" / "x.yaml").read_bytes()
    with pytest.raises(PresetsError) as error:
        store.update("flux/x", body)
    assert error.value.code == "preset_invalid" and error.value.field == field
    assert str(store.folder) in error.value.message or "field" in error.value.message
    assert (store.folder / "flux" / "x.yaml").read_bytes() == before


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "sdxl/../../x", "sdxl", "a/b/c", "SDXL/x"])
def test_ids_with_dots_or_absolute_paths_are_refused(store: Store, bad: str) -> None:
    with pytest.raises(PresetsError) as error:
        store.create({"id": bad, "base_model": "sdxl", "model_id": "tiny"})
    assert error.value.field == "id"
    with pytest.raises(PresetsError):
        store.update(bad, {"steps": 3})
    assert not any(store.folder.rglob("*.yaml")) if store.folder.exists() else True


def test_shipped_presets_get_an_override_and_come_back(store: Store) -> None:
    shipped = registry().get("flux/schnell")
    config = store.update("flux/schnell", {"steps": 6})
    assert config["steps"] == 6 and config["shipped"] and config["overridden"]
    assert yaml.safe_load((store.folder / "flux" / "schnell.yaml").read_text()) == {"steps": 6}  # only the change
    assert registry().get("flux/schnell").steps == 6
    restored = store.delete("flux/schnell")
    assert restored["steps"] == shipped.steps and not restored["overridden"]
    with pytest.raises(PresetsError) as error:
        store.delete("flux/schnell")  # no override left: the shipped file is read-only
    assert error.value.code == "preset_read_only"
    assert (Path(shipped.files[-1])).is_file()


def test_one_default_per_base_type_moves(store: Store) -> None:
    first = store.create({"base_model": "sdxl", "name": "one", "is_default": True}, base=True)
    assert first["model_id"] is None and first["is_default"]
    assert registry().default_for("sdxl").id == "sdxl/one"  # replaces the shipped default
    store.create({"base_model": "sdxl", "name": "two", "is_default": True}, base=True)
    assert registry().default_for("sdxl").id == "sdxl/two"
    assert store.get("sdxl/one")["is_default"] is False
    assert [c["id"] for c in store.for_base("sdxl")] == ["sdxl/one", "sdxl/two"]
    store.delete("sdxl/two")
    assert registry().default_for("sdxl").id == "sdxl/illustrious"  # nothing of ours is default: the shipped one


def test_one_default_per_model_and_lookup_order(store: Store) -> None:
    a = store.create({"base_model": "sdxl", "name": "a", "model_id": "tiny", "is_default": True})
    b = store.create({"base_model": "sdxl", "name": "b", "model_id": "tiny"})
    assert (a["is_default"], b["is_default"]) == (True, False)
    assert store.default_for("tiny")["id"] == "sdxl/a"
    store.set_default("sdxl/b")
    assert (store.get("sdxl/a")["is_default"], store.get("sdxl/b")["is_default"]) == (False, True)
    assert store.default_for("tiny")["id"] == "sdxl/b"
    assert [c["id"] for c in store.for_model("tiny") if c["id"].startswith("sdxl/")][:2] == ["sdxl/a", "sdxl/b"]
    # a model without configurations: the base type's default
    assert store.default_for("someone/else", "illustrious")["id"] == "sdxl/illustrious"


def test_model_ids_round_trip() -> None:
    for source in ({"tiny": True}, {"repo": "org/name", "revision": "main"}, {"repo": "org/name", "revision": "v2"}):
        assert source_of(model_id_of(source), None) == source
    in_repo = {"repo": "org/name", "revision": "main", "file": "x.safetensors", "config": "org/base"}
    assert source_of(model_id_of(in_repo), "org/base") == in_repo
    assert parse_base_model("flux_dev") == ("flux", "flux-dev") and parse_base_model("illustrious") == ("sdxl", "illustrious")


def test_eight_concurrent_writers_lose_nothing(store: Store) -> None:
    store.create({"base_model": "flux", "name": "shared", "model_id": "tiny", "steps": 10})
    errors: list[BaseException] = []
    seen_torn: list[str] = []
    stop = threading.Event()

    def writer(i: int) -> None:
        try:
            store.create({"base_model": "flux", "name": f"w{i}", "model_id": "tiny", "steps": 10 + i, "seed": i})
            for step in range(2):
                store.update(f"flux/w{i}", {"steps": 20 + i + step})
                store.update("flux/shared", {"seed": 100 * i + step})
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            for path in list(store.folder.rglob("*.yaml")) + [store.folder / "configurations.json"]:
                try:
                    text = path.read_text()
                except FileNotFoundError:
                    continue
                try:
                    yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
                except ValueError as exc:
                    seen_torn.append(f"{path}: {exc}")

    watcher = threading.Thread(target=reader)
    watcher.start()
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    watcher.join(timeout=10)
    assert errors == [] and seen_torn == []
    for i in range(8):  # every writer's last update is there: none lost
        config = store.get(f"flux/w{i}")
        assert (config["steps"], config["seed"]) == (21 + i, i)
    assert store.get("flux/shared")["seed"] in {100 * i + 1 for i in range(8)}
    assert not [p for p in store.folder.rglob("*.tmp")]


def test_cli_twins(host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PRESETS_DIR", str(tmp_path / "user"))
    assert main(["presets", "add", "zimage/quick", "--base", "zimage", "--model", "tiny", "--steps", "6",
                 "--param", "max_sequence_length=128", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["additional_params"] == {"max_sequence_length": 128} and created["steps"] == 6
    assert main(["presets", "edit", "zimage/quick", "--steps", "300"]) == 2
    assert "[preset_invalid]" in capsys.readouterr().err and registry().get("zimage/quick").steps == 6
    assert main(["presets", "default", "zimage/quick"]) == 0
    assert "default" in capsys.readouterr().out and Store().get("zimage/quick")["is_default"]
    assert main(["presets", "rm", "zimage/quick"]) == 0
    assert "removed zimage/quick" in capsys.readouterr().out
    assert main(["presets", "rm", "zimage/turbo"]) == 2
    assert "[preset_read_only]" in capsys.readouterr().err
    assert main(["presets", "--json"]) == 0  # the listing is still there
    assert any(row["id"] == "zimage/turbo" for row in json.loads(capsys.readouterr().out))


def test_writes_need_a_user_folder(host, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRESETS_DIR", raising=False)
    store = Store()
    assert store.get("flux/dev")["steps"] == 50  # reads see the shipped presets
    with pytest.raises(PresetsError) as error:
        store.update("flux/dev", {"steps": 3})
    assert error.value.code == "preset_read_only" and "PRESETS_DIR" in error.value.fix


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_damaged_index_is_a_preset_invalid_error(store: Store, text: str) -> None:
    store.folder.mkdir(parents=True)
    (store.folder / "configurations.json").write_text(text, encoding="utf-8")
    with pytest.raises(PresetsError) as error:
        store.all()
    assert error.value.code == "preset_invalid" and "configurations.json" in error.value.message


def test_changing_the_base_model_inherits_from_the_new_family(store: Store) -> None:
    store.create({"base_model": "sdxl", "name": "moving", "model_id": "tiny", "steps": 7})
    moved = store.update("sdxl/moving", {"base_model": "flux_schnell", "resolution_width": 512,
                                         "resolution_height": 512})
    assert (moved["base_model"], moved["steps"]) == ("flux_schnell", 7)
    preset = registry().get("sdxl/moving")
    assert (preset.family, preset.size.multiple, preset.prompt_style) == ("flux", 16, "natural")
    with pytest.raises(PresetsError) as error:
        store.update("sdxl/moving", {"id": "flux/renamed"})
    assert error.value.field == "id"


def test_a_lock_held_elsewhere_is_a_coded_error_not_a_hang(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from filelock import FileLock

    from diffusers_presets.core import configurations

    monkeypatch.setattr(configurations, "LOCK_WAIT_S", 0.2)
    store.folder.mkdir(parents=True)
    with FileLock(str(store.folder / configurations.LOCK_NAME)):  # another process's hold, as the OS sees it
        with pytest.raises(PresetsError) as error:
            store.create({"base_model": "flux", "name": "blocked", "model_id": "tiny"})
    assert error.value.code == "preset_read_only" and "try again" in error.value.fix
    assert store.create({"base_model": "flux", "name": "free", "model_id": "tiny"})["name"] == "free"
