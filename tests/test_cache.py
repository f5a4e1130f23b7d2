"""The manifest cache: a hit gives exactly what validating gives, and nothing else ever
comes out of it (edits, bad manifests, corrupt or untrusted files)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

import connector
from connector.core import cache as cache_module
from connector.core.cache import ManifestCache, default_cache
from connector.core.loader import packaged_manifests_dir, read_model
from connector.format.manifest import AppManifest, ModuleManifest
from tests.conftest import WRITE_KEY, run_cli

SEGMENT = packaged_manifests_dir() / "segment"


def _files() -> list[tuple[Path, type[Any]]]:
    files: list[tuple[Path, type[Any]]] = []
    for app_file in sorted(packaged_manifests_dir().glob("*/app.json")):
        files.append((app_file, AppManifest))
        for module in json.loads(app_file.read_text())["modules"]:
            files.append((app_file.parent / module, ModuleManifest))
    return files


@pytest.fixture
def store(tmp_path: Path) -> ManifestCache:
    return ManifestCache(tmp_path / "cache")


def _entries(store: ManifestCache) -> list[Path]:
    return sorted(store.directory.glob("*.pickle")) if store.directory.exists() else []


@pytest.mark.parametrize(("path", "model"), _files(), ids=lambda v: getattr(v, "name", ""))
def test_a_hit_is_the_model_validation_gives(
    store: ManifestCache, path: Path, model: type[Any]
) -> None:
    fresh = read_model(path, model)
    first = read_model(path, model, store)  # a miss: validated, then stored
    assert len(_entries(store)) == 1
    calls: list[Any] = []
    original = model.model_validate
    try:
        model.model_validate = lambda *a, **k: calls.append(a)  # type: ignore[method-assign]
        hit = read_model(path, model, store)
    finally:
        model.model_validate = original  # type: ignore[method-assign]
    assert calls == []  # served from the cache, not validated
    assert hit == fresh == first and hit is not first
    assert hit.model_dump(by_alias=True) == fresh.model_dump(by_alias=True)


def test_a_cached_registry_runs_like_a_fresh_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_CACHE", str(tmp_path / "cache"))
    fresh = connector.load(cache=False)
    assert not (tmp_path / "cache").exists()
    connector.load()  # fills the cache
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == len(_files())
    cached = connector.load()
    assert cached.module_ids() == fresh.module_ids()
    conn = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    parameters = {"event": "E", "userId": "u", "customProperties": [{"key": "k", "value": 1}]}
    for module_id in fresh.module_ids():
        assert cached.describe(module_id) == fresh.describe(module_id)
    with connector.Engine(fresh) as one, connector.Engine(cached) as two:
        a = one.dry_run("segment.track", conn, parameters)
        b = two.dry_run("segment.track", conn, parameters)
    for request in (a, b):
        body = request["body"]
        del body["messageId"], body["timestamp"]
    assert a == b


def test_an_edit_is_validated_again(store: ManifestCache, tmp_path: Path) -> None:
    path = tmp_path / "track.json"
    shutil.copy(SEGMENT / "track.json", path)
    read_model(path, ModuleManifest, store)
    data = json.loads(path.read_text())
    data["parameters"][0]["type"] = "no-such-type"
    path.write_text(json.dumps(data))
    with pytest.raises(connector.ManifestError) as info:
        read_model(path, ModuleManifest, store)
    assert info.value.path.startswith("$.parameters[0]")


def test_a_bad_manifest_is_never_stored(store: ManifestCache, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"id": "x"}')
    for _ in range(2):
        with pytest.raises(connector.ManifestError):
            read_model(path, ModuleManifest, store)
    assert _entries(store) == []


def test_the_key_covers_model_content_and_engine(store: ManifestCache) -> None:
    content = (SEGMENT / "track.json").read_bytes()
    key = store.key(ModuleManifest, content)
    assert key == ManifestCache(store.directory).key(ModuleManifest, content)
    assert key != store.key(AppManifest, content)
    assert key != store.key(ModuleManifest, content + b" ")
    fingerprint = (store.fingerprint() or b"").decode()
    package = Path(cache_module.__file__).parent.parent
    sources = sorted(p.relative_to(package).as_posix() for p in package.rglob("*.py"))
    assert sources and all(f"\n{name}:" in fingerprint for name in sources)
    assert connector.__version__ in fingerprint


@pytest.mark.parametrize(
    "garbage", [b"", b"not a pickle", pickle.dumps({"a": 1}), pickle.dumps("x")[:-3]]
)
def test_a_corrupt_entry_is_a_miss_and_is_replaced(store: ManifestCache, garbage: bytes) -> None:
    path = SEGMENT / "track.json"
    fresh = read_model(path, ModuleManifest, store)
    [entry] = _entries(store)
    entry.write_bytes(garbage)
    assert read_model(path, ModuleManifest, store) == fresh
    assert pickle.loads(entry.read_bytes()) == fresh


#: What planted entries ran (see _Planted).
RAN: list[str] = []


def _mark(what: str) -> None:
    RAN.append(what)


class _Planted:
    """What another user could plant: unpickling it runs code (here, _mark)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark, ("ran",))


def _plant(store: ManifestCache) -> Path:
    content = (SEGMENT / "track.json").read_bytes()
    entry = store.directory / (store.key(ModuleManifest, content) + ".pickle")
    entry.write_bytes(pickle.dumps(_Planted()))
    return entry


def test_a_directory_others_may_write_is_never_read(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    store = ManifestCache(directory)
    _plant(store)
    RAN.clear()
    manifest = read_model(SEGMENT / "track.json", ModuleManifest, store)
    assert RAN == [] and manifest.id == "segment.track"
    directory.chmod(0o700)  # the same entry in a private directory is read (and refused)
    read_model(SEGMENT / "track.json", ModuleManifest, ManifestCache(directory))
    assert RAN == ["ran"]


def _planted_read(store: ManifestCache) -> list[str]:
    RAN.clear()
    manifest = read_model(SEGMENT / "track.json", ModuleManifest, store)
    assert manifest.id == "segment.track"  # validated instead: the load never fails
    return list(RAN)


def test_a_directory_of_another_user_is_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    store = ManifestCache(directory)
    _plant(store)
    assert _planted_read(store) == ["ran"]  # ours: read (the plant shows it was)
    _plant(store)  # (the miss above stored the real model over it)
    other = os.geteuid() + 1
    monkeypatch.setattr(os, "geteuid", lambda: other)
    assert _planted_read(store) == []


def test_a_directory_that_became_shared_is_no_longer_read(tmp_path: Path) -> None:
    """Checked at every read, by the same cache object too."""
    directory = tmp_path / "cache"
    store = ManifestCache(directory)
    read_model(SEGMENT / "track.json", ModuleManifest, store)  # creates it, private
    _plant(store)
    directory.chmod(0o777)
    assert _planted_read(store) == []


def test_links_are_never_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    _plant(ManifestCache(real))
    linked = tmp_path / "linked"
    linked.symlink_to(real)
    assert _planted_read(ManifestCache(linked)) == []  # a linked directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    store = ManifestCache(elsewhere)
    entry = _plant(store)
    moved = entry.with_suffix(".moved")
    entry.rename(moved)
    entry.symlink_to(moved)
    assert _planted_read(store) == []  # a linked entry
    entry.unlink()
    os.link(moved, entry)
    assert _planted_read(store) == []  # an entry with a second name (a hard link)


def test_an_entry_others_may_write_is_never_read(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    store = ManifestCache(directory)
    entry = _plant(store)
    entry.chmod(0o666)
    assert _planted_read(store) == []
    _plant(store).chmod(0o600)  # (the miss above stored the real model over it)
    assert _planted_read(store) == ["ran"]


def _package(root: Path) -> Path:
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.py").write_text("B = 2\n")
    return root


def test_the_fingerprint_follows_the_sources_and_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path / "pkg")
    content = b"{}"

    def key() -> str | None:
        return ManifestCache(tmp_path / "cache", package=package).key(ModuleManifest, content)

    first = key()
    assert first is not None and first == key()
    (package / "sub" / "b.py").write_text("B = 3\n")  # same size, new mtime
    os.utime(package / "sub" / "b.py", ns=(1, 1))
    second = key()
    assert second != first
    (package / ".#a.py").symlink_to("user@host.1:1")  # an editor's dangling lock link
    assert key() == second
    import pydantic

    monkeypatch.setattr(pydantic, "VERSION", "0.0.0")
    assert key() != second


def test_unreadable_engine_files_mean_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _package(tmp_path / "pkg")
    (package / "dangling.py").symlink_to(tmp_path / "missing")  # listed by its link alone
    assert ManifestCache(tmp_path / "cache", package=package).key(ModuleManifest, b"") is not None

    def denied(self: Path) -> os.stat_result:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "lstat", denied)
    store = ManifestCache(tmp_path / "cache", package=package)
    assert store.key(ModuleManifest, b"{}") is None
    assert read_model(SEGMENT / "track.json", ModuleManifest, store).id == "segment.track"
    assert not (tmp_path / "cache").exists()


def test_the_directory_is_created_private(store: ManifestCache) -> None:
    read_model(SEGMENT / "track.json", ModuleManifest, store)
    assert store.directory.stat().st_mode & 0o777 == 0o700


def test_an_unwritable_cache_is_no_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = ManifestCache(blocker / "cache")
    manifest = read_model(SEGMENT / "track.json", ModuleManifest, store)
    assert manifest.id == "segment.track"


def test_old_entries_are_pruned(store: ManifestCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_ENTRIES", 4)
    for i in range(5):
        store.put(f"{i:064x}", {"entry": i})
    assert 0 < len(_entries(store)) <= 4
    assert store.get(f"{4:064x}") == {"entry": 4}  # the newest stays


HOME = Path("/home/of/connector")


@pytest.mark.parametrize(
    ("value", "requested", "expected"),
    [
        # A library host that does not say: only where CONNECTOR_CACHE names one.
        (None, None, None),
        ("/some/where", None, Path("/some/where")),
        # The CLI asks for it: CONNECTOR_CACHE, else under CONNECTOR_HOME.
        (None, True, HOME / "cache"),
        ("/some/where", True, Path("/some/where")),
        # Asked not to, or turned off by the environment: none.
        (None, False, None),
        ("/some/where", False, None),
        *(
            (off, requested, None)
            for off in ("off", "0", "", "FALSE")
            for requested in (None, True)
        ),
    ],
)
def test_the_environment_and_the_caller_choose_the_cache(
    monkeypatch: pytest.MonkeyPatch,
    value: str | None,
    requested: bool | None,
    expected: Path | None,
) -> None:
    if value is None:
        monkeypatch.delenv("CONNECTOR_CACHE", raising=False)
    else:
        monkeypatch.setenv("CONNECTOR_CACHE", value)
    monkeypatch.setenv("CONNECTOR_HOME", str(HOME))
    found = default_cache(requested)
    assert (found.directory if found is not None else None) == expected


def test_a_library_load_writes_nothing_unasked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``connector.load()`` in a host writes no pickle under the user's home; the same
    host asking with ``cache=True`` gets the cache there."""
    monkeypatch.delenv("CONNECTOR_CACHE", raising=False)
    monkeypatch.setenv("CONNECTOR_HOME", str(tmp_path / "connector-home"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert "segment.track" in connector.load().module_ids()
    assert list(tmp_path.rglob("*.pickle")) == []
    from connector.core import loader

    monkeypatch.setattr(loader, "_POLL", [])  # as in a new process
    connector.load(cache=True)
    # One entry a manifest file, and one for the engine's poll parameters.
    assert len(list((tmp_path / "connector-home" / "cache").glob("*.pickle"))) == len(_files()) + 1


@pytest.mark.parametrize(("cache", "stored"), [(None, True), ("off", False)])
def test_the_command_line_uses_the_cache_unless_turned_off(
    tmp_path: Path, cache: str | None, stored: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_CACHE"}
    env["CONNECTOR_HOME"] = str(tmp_path)
    if cache is not None:
        env["CONNECTOR_CACHE"] = cache
    done = run_cli("modules", env=env)
    assert done.returncode == 0, done.stderr
    assert "segment.track" in done.stdout
    # One entry a manifest file, and one for the engine's poll parameters.
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == (len(_files()) + 1 if stored else 0)


def test_no_home_directory_is_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host without a home directory (some containers) still loads, uncached."""

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory")

    monkeypatch.delenv("CONNECTOR_CACHE", raising=False)
    monkeypatch.delenv("CONNECTOR_HOME", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert default_cache(True) is None
    assert "segment.track" in connector.load().module_ids()


def test_the_engines_poll_parameters_are_cached_like_a_manifest(
    store: ManifestCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every polling trigger gets the engine's poll parameters: validated once, then
    read from the cache by the next process (building their validator costs ~30 ms)."""
    from connector.core import loader
    from connector.format.manifest import POLL_PARAMETERS, Parameter

    monkeypatch.setattr(loader, "_POLL", [])
    first = loader._poll_parameters(store)
    assert [p.name for p in first] == [p["name"] for p in POLL_PARAMETERS]
    assert first == tuple(Parameter.model_validate(p) for p in POLL_PARAMETERS)

    def no_validation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validated again")

    monkeypatch.setattr(loader, "_POLL", [])  # a new process
    monkeypatch.setattr(Parameter, "model_validate", no_validation)
    assert loader._poll_parameters(store) == first
    # Without a cache (or on a miss) they are validated.
    monkeypatch.setattr(loader, "_POLL", [])
    with pytest.raises(AssertionError, match="validated again"):
        loader._poll_parameters(None)
