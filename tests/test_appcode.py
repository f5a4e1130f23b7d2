"""Code an app ships from modules/: found from app.json, loaded by the Python API and
the CLI, refused with a ManifestError when it cannot be, and part of the manifest
cache's key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import connector
from connector.core.cache import ManifestCache
from connector.core.loader import load_app
from tests.conftest import run_cli
from tests.fakeapi import APP_DIR, PASSCODE, FakeAPI


def _copy(tmp_path: Path, code: dict[str, Any] | None = None) -> Path:
    folder = tmp_path / "fakeapi"
    shutil.copytree(APP_DIR, folder)
    if code is not None:
        data = json.loads((folder / "app.json").read_text())
        data["code"] = code
        (folder / "app.json").write_text(json.dumps(data))
    return folder


BAD_CODE = [
    ({"signer": "fakeapi/nope.py:sign"}, "$.code.signer", "no file 'fakeapi/nope.py'"),
    ({"signer": "fakeapi/sign.py:nope"}, "$.code.signer", "has no function 'nope'"),
    ({"signer": "../sign.py:sign"}, "$.code.signer", "pattern"),
    (
        {"filters": {"x": "fakeapi/broken.py:f"}},
        "$.code.filters.x",
        "failed to load: ZeroDivisionError",
    ),
    ({"filters": {"bad-name": "fakeapi/filters.py:shout"}}, "$.code.filters.bad-name", "letters"),
]


@pytest.mark.parametrize(("code", "path", "message"), BAD_CODE)
def test_code_that_cannot_load_is_a_manifest_error(
    tmp_path: Path, code: dict[str, Any], path: str, message: str
) -> None:
    folder = _copy(tmp_path, code)
    (folder / "modules" / "fakeapi" / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(connector.ManifestError) as info:
        connector.load(folder, packaged=False)
    assert info.value.path == path
    assert message in info.value.message


def test_filter_names_are_the_apps_and_used_at_load_time(tmp_path: Path) -> None:
    registry = connector.load(APP_DIR, packaged=False)
    assert registry.apps["fakeapi"].code is not None
    assert registry.apps["fakeapi"].code.filters == {"fakeapi_shout": "fakeapi/filters.py:shout"}
    # A module of another app using a filter nobody declared fails to load.
    folder = _copy(tmp_path, {})
    with pytest.raises(connector.ManifestError) as info:
        connector.load(folder, packaged=False)
    assert "fakeapi_shout" in info.value.message


def test_editing_the_code_changes_the_cache_key(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    cache = ManifestCache(tmp_path / "cache")
    from connector.core import loader

    keys: list[str | None] = []
    real = ManifestCache.key

    def spy(self: ManifestCache, model: type[Any], content: bytes) -> str | None:
        key = real(self, model, content)
        if model.__name__ == "ModuleManifest":
            keys.append(key)
        return key

    ManifestCache.key = spy  # type: ignore[method-assign]
    try:
        loader._load_app(folder / "app.json", cache)
        first = list(keys)
        keys.clear()
        loader._load_app(folder / "app.json", cache)
        assert keys == first  # unchanged code: the same keys, the cache is used
        sign = folder / "modules" / "fakeapi" / "sign.py"
        sign.write_text(sign.read_text() + "\n# edited\n")
        keys.clear()
        loader._load_app(folder / "app.json", cache)
        assert set(keys).isdisjoint(first)
    finally:
        ManifestCache.key = real  # type: ignore[method-assign]


def test_signer_runs_in_the_cli_too(tmp_path: Path) -> None:
    """The fake API refuses unsigned requests: a CLI run that passes was signed."""
    with FakeAPI() as api:
        upload = ("run", "fakeapi.upload", "-c", json.dumps(api.connection()))
        upload += ("-p", '{"identity": "u", "name": "n", "when": 0}')
        upload += ("--manifests", str(APP_DIR), "--no-packaged")
        done = run_cli(*upload, "--no-store")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["processed"] == 1
        assert api.sent("/upload")[0].headers["x-signature"]
        dry = run_cli(*upload, "--dry-run")
        assert json.loads(dry.stdout)["signer"] == "fakeapi/sign.py:sign"


def test_a_signer_that_fails_is_a_configuration_error(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "modules" / "fakeapi" / "sign.py").write_text(
        "def sign(request, connection):\n    raise KeyError(connection['passcode'])\n"
    )
    with FakeAPI() as api, connector.Engine(connector.load(folder, packaged=False)) as engine:
        with pytest.raises(connector.RunError) as info:
            engine.run(
                "fakeapi.upload", api.connection(), {"identity": "u", "name": "n", "when": 0}
            )
        assert api.state.received == []
    assert info.value.type == "InvalidConfigurationError"
    assert "KeyError" in info.value.message
    assert PASSCODE not in info.value.message  # redacted


def test_load_app_loads_code(tmp_path: Path) -> None:
    app, modules = load_app(APP_DIR / "app.json")
    assert app.code is not None and app.code.signer_name == "fakeapi/sign.py:sign"
    assert len(app.code.digest) == 64 and len(modules) == 6


def _filter_app(root: Path, app: str, filter_name: str) -> Path:
    folder = root / app
    (folder / "modules" / app).mkdir(parents=True)
    (folder / "modules" / app / "filters.py").write_text(
        f"def f(value):\n    return {app!r} + ':' + str(value)\n"
    )
    (folder / "app.json").write_text(
        json.dumps(
            {
                "name": app,
                "label": app,
                "baseUrl": "http://127.0.0.1:9",
                "connection": {"fields": [], "auth": {"type": "none"}},
                "code": {"filters": {filter_name: f"{app}/filters.py:f"}},
                "modules": ["echo.json"],
            }
        )
    )
    (folder / "echo.json").write_text(
        json.dumps(
            {
                "id": f"{app}.echo",
                "label": "Echo",
                "description": "Echo.",
                "request": {"method": "GET", "url": "/echo"},
            }
        )
    )
    return folder


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("clash", "x_f"), ("clash_x", "f")),  # clash + x_f, clash_x + f: clash_x_f
        (("clash2_y", "g"), ("clash2", "y_g")),  # the other order
    ],
)
def test_filter_names_of_two_apps_that_collide_are_refused_naming_both(
    tmp_path: Path, first: tuple[str, str], second: tuple[str, str]
) -> None:
    shared = f"{first[0]}_{first[1]}"
    assert shared == f"{second[0]}_{second[1]}"
    loaded = connector.load(_filter_app(tmp_path, *first), packaged=False)
    assert loaded.apps[first[0]].code.filters == {shared: f"{first[0]}/filters.py:f"}  # type: ignore[union-attr]
    with pytest.raises(connector.ManifestError) as info:
        connector.load(_filter_app(tmp_path, *second), packaged=False)
    assert info.value.path == f"$.code.filters.{second[1]}"
    message = info.value.message
    assert shared in message and repr(first[0]) in message and repr(second[0]) in message
    # The first app's filter is still the one the name renders with.
    from connector.templating.templates import compile_template

    assert compile_template("{{ 1 | " + shared + " }}").render({}) == f"{first[0]}:1"
    # The same app loaded again replaces its own, as before.
    connector.load(_filter_app(tmp_path / "again", *first), packaged=False)
