"""`pip install .` ships the manifests, the schemas and the `connector` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import SHIPPED_MODULES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    [built] = out.glob("connector-*.whl")
    return built


def test_wheel_contains_manifests_schemas_and_entry_point(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for manifest in sorted((ROOT / "manifests").rglob("*.json")):
        relative = manifest.relative_to(ROOT / "manifests").as_posix()
        assert f"connector/_manifests/{relative}" in names
    assert "connector/format/schema/app.schema.json" in names
    assert "connector/format/schema/module.schema.json" in names
    assert "connector/format/schema/fixture.schema.json" in names
    assert "connector/_manifests/segment/tests/track.json" in names  # the modules' examples
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "connector = connector._program:main" in text
    assert not any(n.startswith("tests/") for n in names)
    # App code ships inside the package, where the loader looks for it; never as a
    # generic top-level "modules" package in site-packages.
    assert "connector/_modules/__init__.py" in names
    assert not any(n.startswith("modules/") for n in names)


def test_installed_package_runs_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    assert (target / "bin" / "connector").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import connector, json; r = connector.load(); "
            "print(json.dumps([connector.__file__, r.module_ids()]))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=60,
    )
    where, modules = json.loads(done.stdout)
    assert where.startswith(str(target))
    assert modules == SHIPPED_MODULES
