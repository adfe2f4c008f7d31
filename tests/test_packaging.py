"""How the project is installed and put together: the package list in pyproject.toml, the
config tree shipped as package data, and the import rule of the design (no module reaches
into another package's private names). The wheel itself is built, installed and run from
an empty directory by .ci/wheel_smoke.sh."""

from __future__ import annotations

import ast
import tomllib
from importlib.resources import files
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_in_the_wheel():
    """The list is written out (a mapped folder cannot be discovered): a new subpackage
    left off it would be missing from the wheel while the checkout still works."""
    setup = PYPROJECT["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set(find_packages(str(ROOT), include=["bench", "bench.*"]))
    # hydra_plugins is a namespace package (Hydra's rule): no __init__.py of its own
    found |= {f"hydra_plugins.{p}" for p in find_packages(str(ROOT / "hydra_plugins"))}
    found |= set(setup["package-dir"])
    assert listed == found


def test_config_tree_and_search_spaces_are_package_resources():
    from bench.config import CONF_DIR, SWEEPS_DIR

    assert (files("bench.conf") / "config.yaml").is_file()
    assert (files("bench.sweeps") / "recurrent.yaml").is_file()
    assert (CONF_DIR / "sweep" / "default.yaml").is_file() and SWEEPS_DIR.is_dir()


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name


def test_no_module_imports_a_private_name_of_another_package():
    offenders = []
    for source in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")]:
        package = ".".join(source.relative_to(ROOT).with_suffix("").parts[:-1])
        for module, name in _imports(source):
            if not module.startswith("bench") or not name.startswith("_"):
                continue
            if name.startswith("__") or module.rsplit(".", 1)[0] == package or module == package:
                continue
            offenders.append(f"{source.relative_to(ROOT)}: from {module} import {name}")
    assert offenders == []


def test_scikit_learn_is_not_a_dependency():
    assert not any(d.startswith("scikit-learn") for d in PYPROJECT["project"]["dependencies"])


def test_a_config_dir_of_ones_own_joins_the_packaged_tree(tmp_path):
    import subprocess
    import sys

    (tmp_path / "mine" / "dataset").mkdir(parents=True)
    text = (ROOT / "conf" / "dataset" / "synthetic.yaml").read_text()
    (tmp_path / "mine" / "dataset" / "mysynth.yaml").write_text(
        text.replace("name: synthetic", "name: mysynth"))
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--config-dir", "mine", "dataset=mysynth",
         "model=gru", "--cfg", "job"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "name: mysynth" in out and "cell: gru" in out
