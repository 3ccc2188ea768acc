"""The install layout: every package of the source tree is listed for installation."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_package_is_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    mapping = project["tool"]["setuptools"]["package-dir"]
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    # fvmatch's own folder holds no models/ or training/: those come from the mapping
    assert found == listed


def test_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text().splitlines()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = next(line.strip() for line in readme[:20] if "pytest" in line)
    assert command in [line.strip() for line in ci]


TRAINING_PACKAGES = ("torch", "torchvision", "torchaudio", "facenet-pytorch", "onnx", "resemblyzer", "silero-vad")


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].strip().split("=")[0].split(">")[0].split("<")[0].strip().lower()


def test_torch_and_its_packages_are_the_training_extra_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not {_name(r) for r in project["dependencies"]} & set(TRAINING_PACKAGES)
    train = {_name(r): r for r in project["optional-dependencies"]["train"]}
    assert set(train) == set(TRAINING_PACKAGES)
    assert train["torch"] == "torch==2.9.1" and train["torchvision"] == "torchvision==0.24.1"  # the pinned pair


def test_readme_first_command_is_the_light_install_and_ci_installs_the_extra():
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert ".venv/bin/pip install . " in first and "[train" not in first and "--space joint" not in first
    assert "fvmatch enroll" in first and "fvmatch identify" in first
    tests_block = readme.split("```bash\n", 2)[2].split("```", 1)[0].splitlines()
    assert tests_block[0] == "bash .ci/install"
    assert "-e '.[train,dev,team]'" in (ROOT / ".ci" / "install").read_text()
