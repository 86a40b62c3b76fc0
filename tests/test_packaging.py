"""Packaging: the Comfy Registry's checks (what `comfy node validate` and `comfy node publish`
check, reproduced offline from comfy-cli's registry/config_parser.py and custom_nodes/command.py),
requirements.txt that never touches torch, and node_list.json in step with the nodes."""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT, COMFY = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]
TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}
# comfy-cli: validate_and_extract_os_classifiers / validate_and_extract_accelerator_classifiers / validate_version
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")
ACCELERATORS = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend", "GPU :: Apple Metal"}
VERSION_PART = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
# The Registry's node id and publisher id rules.
NODE_ID = re.compile(r"^[a-z][a-z0-9-_]+(\.[a-z0-9-_]+)*$")
PUBLISHER_ID = re.compile(r"^[a-z][a-z0-9-]*$")


def requirement_lines() -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    return [line for line in lines if line]


def test_registry_project_metadata() -> None:
    assert NODE_ID.match(PROJECT["name"]) and len(PROJECT["name"]) <= 100
    assert not PROJECT["name"].startswith(("comfyui", "comfy-", "comfy_"))  # comfy-cli strips such prefixes
    assert isinstance(PROJECT["version"], str) and VERSION_PART.match(PROJECT["version"].strip())
    assert "version" not in PROJECT.get("dynamic", [])
    assert PROJECT["description"].strip()
    license_ = PROJECT["license"]
    assert isinstance(license_, str) or {"file", "text"} & set(license_)  # comfy-cli's two accepted forms
    for file in PROJECT.get("license-files", []):
        assert (ROOT / file).is_file()
    urls = PROJECT["urls"]
    for key in ("Homepage", "Documentation", "Repository", "Issues"):  # the ones the Registry reads
        assert urlsplit(urls[key]).scheme == "https", key
    classifiers = PROJECT["classifiers"]
    systems = [c.removeprefix("Operating System :: ") for c in classifiers if c.startswith("Operating System :: ")]
    assert systems and all(s.startswith(OS_PREFIXES) for s in systems)
    accelerators = [c.removeprefix("Environment :: ") for c in classifiers if c.startswith("Environment ::")]
    assert accelerators and set(accelerators) <= ACCELERATORS
    for dep in PROJECT["dependencies"]:
        if dep.startswith("comfyui-frontend-package"):
            assert all(VERSION_PART.match(p.strip()) for p in dep.removeprefix("comfyui-frontend-package").split(","))
    requires = COMFY.get("requires-comfyui", "")
    assert all(VERSION_PART.match(p.strip()) for p in requires.split(",")) if requires else True


def test_registry_tool_comfy() -> None:
    assert PUBLISHER_ID.match(COMFY["PublisherId"])  # publish refuses an empty one
    assert COMFY["DisplayName"].strip()
    icon = urlsplit(COMFY["Icon"])
    assert icon.scheme == "https" and icon.path.endswith((".svg", ".png", ".jpg", ".webp"))
    # The icon is this checkout's file, served raw from the repository named in [project.urls].
    owner_repo = urlsplit(PROJECT["urls"]["Repository"]).path.strip("/")
    prefix = f"/{owner_repo}/main/"
    assert icon.netloc == "raw.githubusercontent.com" and icon.path.startswith(prefix)
    icon_file = ROOT / icon.path.removeprefix(prefix)
    assert icon_file.is_file()
    if icon_file.suffix == ".svg":
        import xml.etree.ElementTree as ElementTree

        assert ElementTree.parse(icon_file).getroot().tag.endswith("svg")
    assert COMFY["includes"] and all((ROOT / include).is_dir() for include in COMFY["includes"])
    for model in COMFY.get("Models", []):
        assert {"location", "model_url"} <= set(model)


def _python_files() -> list[Path]:
    skip = {".git", "__pycache__", "venv", ".venv", "build", "dist", "output", "temp", "user", "input"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def test_registry_security_checks() -> None:
    """comfy-cli runs `ruff check --select S102,S307,E702`: no exec, no eval, no `a; b` lines."""
    found = []
    for path in _python_files():
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval"):
                found.append(f"{path}:{node.lineno}: {node.func.id}")
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.OP and token.string == ";":
                found.append(f"{path}:{token.start[0]}: statements joined with ';'")
    assert found == []


def test_requirements_never_touch_torch_and_match_pyproject() -> None:
    lines = requirement_lines()
    requirements = [Requirement(line) for line in lines]  # every line parses on its own
    names = {r.name.lower().replace("_", "-") for r in requirements}
    assert not names & TORCH_PACKAGES
    assert len(names) == len(lines)
    project = {Requirement(dep).name.lower().replace("_", "-"): str(Requirement(dep).specifier)
               for dep in PROJECT["dependencies"]}
    assert {n: s for n, s in project.items() if n not in TORCH_PACKAGES} == {
        r.name.lower().replace("_", "-"): str(r.specifier) for r in requirements}


def test_every_requirement_is_satisfied_here_without_replacing_torch() -> None:
    """Offline stand-in for `pip install --dry-run <line>` (which needs the index): the installed
    version satisfies each line, and what each of them requires of torch is met by the torch
    that is already installed, so installing the lines would leave torch alone."""
    torch_version = Version(metadata.version("torch").split("+")[0])
    for line in requirement_lines():
        requirement = Requirement(line)
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (line, installed)
        for needed in metadata.requires(requirement.name) or []:
            dep = Requirement(needed)
            if dep.name.lower() in TORCH_PACKAGES and (dep.marker is None or dep.marker.evaluate({"extra": ""})):
                assert dep.name.lower() == "torch" and dep.specifier.contains(torch_version, prereleases=True), \
                    (line, needed)


@pytest.fixture(scope="module")
def pack() -> object:
    import diffusers_presets

    return diffusers_presets


def test_node_list_matches_the_nodes(pack) -> None:
    node_list = json.loads((ROOT / "node_list.json").read_text(encoding="utf-8"))
    assert list(node_list) == list(pack.NODE_CLASS_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        # the listing's text is the start of the node's own description
        assert node_list[name] and cls.DESCRIPTION.startswith(node_list[name]), name


def test_nodes_share_one_category_root_and_explain_every_input(pack) -> None:
    roots = {cls.CATEGORY.split("/")[0] for cls in pack.NODE_CLASS_MAPPINGS.values()}
    assert roots == {"Diffusers Presets"}
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.DESCRIPTION.strip() and len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES), name
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, value in spec.get(section, {}).items():
                options = value[1] if len(value) > 1 else {}
                assert options.get("tooltip"), f"{name}.{input_name}"


def test_package_data_ships_what_the_pack_reads() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["diffusers_presets"]
    for pattern in ("presets/*.yaml", "presets/*/*.yaml", "node_list.json", "example_workflows/*.json",
                    "example_workflows/*.jpg"):
        assert pattern in data and list(ROOT.glob(pattern)), pattern
    server_data = PYPROJECT["tool"]["setuptools"]["package-data"]["diffusers_presets.runner.server"]
    assert "web/*.js" in server_data and list((ROOT / "runner" / "server").glob("web/*.js"))
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] in ("core", "nodes", "runner"):
            assert ".".join(("diffusers_presets", *rel.parts)) in packages, rel
