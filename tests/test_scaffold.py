"""``connector new``: what it writes loads, validates, passes its own fixtures, and
documents itself, before the integrator has changed a line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import connector
from connector.core.loader import check_json_schema
from connector.tools.docs import module_page, write_docs
from connector.tools.fixtures import run_fixtures
from connector.tools.scaffold import ScaffoldError, _list_module, new_app, new_module
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


def test_new_module_is_valid_tested_and_documented(tmp_path: Path) -> None:
    apps, docs = tmp_path / "manifests", tmp_path / "docs" / "modules"
    done = new_module(apps, "acme", "send_event", docs)
    assert [p.relative_to(tmp_path).as_posix() for p in done.created] == [
        "manifests/acme/app.json",
        "manifests/acme/send_event.json",
        "manifests/acme/tests/send_event.json",
        "docs/modules/acme.send_event.md",
    ]
    assert done.updated == []
    registry = connector.load(apps / "acme", packaged=False)
    check_json_schema(registry)  # what editors check, too
    assert registry.module_ids() == ["acme.send_event"]
    results = run_fixtures(registry)
    assert [r.case for r in results if r.ok] == [
        "sends the mapped fields",
        "refuses a missing name before sending",
        "a 401 answer is an InvalidAccessTokenError",
    ]
    module = registry.get("acme.send_event")
    assert (docs / "acme.send_event.md").read_text() == module_page(module)
    assert write_docs(registry, docs, check=True, reference=False) == []
    assert registry.describe("acme.send_event")["output"]["sample"]["status"] == 200


def test_scaffolded_schema_paths_point_at_the_shipped_schemas(tmp_path: Path) -> None:
    new_module(tmp_path, "acme", "send_event")
    for file, schema in [
        ("acme/app.json", "app.schema.json"),
        ("acme/send_event.json", "module.schema.json"),
        ("acme/tests/send_event.json", "fixture.schema.json"),
    ]:
        ref = json.loads((tmp_path / file).read_text())["$schema"]
        target = ((tmp_path / file).parent / ref).resolve()
        assert target == (ROOT / "connector" / "format" / "schema" / schema).resolve()


def test_scaffolded_module_runs(tmp_path: Path) -> None:
    new_module(tmp_path, "acme", "send_event")
    registry = connector.load(tmp_path / "acme", packaged=False)
    with connector.Engine(registry) as engine:
        request = engine.dry_run(
            "acme.send_event",
            {"apiKey": "key-123456", "host": "http://127.0.0.1:9"},
            {"name": "{{ hook.event }}", "properties": {"plan": "pro"}},
            {"hook": {"event": "Signed Up"}},
        )
    assert request["url"] == "http://127.0.0.1:9/send_event"
    assert request["headers"]["Authorization"] == "[REDACTED]"
    assert request["body"]["name"] == "Signed Up"
    assert request["body"]["properties"] == {"plan": "pro"}


def test_second_module_is_appended_keeping_the_layout(tmp_path: Path) -> None:
    new_module(tmp_path, "acme", "send_event")
    app_file = tmp_path / "acme" / "app.json"
    before = app_file.read_text()
    done = new_module(tmp_path, "acme", "update_user")
    assert done.updated == [app_file]
    after = app_file.read_text()
    assert after == before.replace('"send_event.json"', '"send_event.json", "update_user.json"')
    assert connector.load(tmp_path / "acme", packaged=False).module_ids() == [
        "acme.send_event",
        "acme.update_user",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"modules": []}', '{"modules": ["b.json"]}'),
        ('{"modules": ["a.json"]}', '{"modules": ["a.json", "b.json"]}'),
        (
            '{\n  "modules": [\n    "a.json"\n  ]\n}',
            '{\n  "modules": [\n    "a.json", "b.json"\n  ]\n}',
        ),
        ('{"modules": ["b.json"]}', '{"modules": ["b.json"]}'),
        # A "]" inside a name defeats the in-place edit: the file is rewritten instead.
        ('{"modules": ["a].json"]}', '{\n  "modules": ["a].json", "b.json"]\n}\n'),
    ],
)
def test_list_module(tmp_path: Path, text: str, expected: str) -> None:
    app_file = tmp_path / "app.json"
    app_file.write_text(text)
    _list_module(app_file, "b.json")
    assert app_file.read_text() == expected


@pytest.mark.parametrize(
    ("app", "module", "field", "message"),
    [
        ("Acme", "send", "app", "app name 'Acme' must be lowercase"),
        ("acme-co", "send", "app", "app name 'acme-co'"),
        ("acme", "Send", "module", "module name 'Send'"),
        ("acme", "send.event", "module", "module name 'send.event'"),
        ("acme", "1st", "module", "module name '1st'"),
        ("acme", "existing", "module", "existing.json already exists"),
    ],
)
def test_bad_names_and_existing_files(
    tmp_path: Path, app: str, module: str, field: str, message: str
) -> None:
    new_module(tmp_path, "acme", "existing")
    with pytest.raises(ScaffoldError) as info:
        new_module(tmp_path, app, module)
    assert info.value.field == field
    assert message in info.value.message


def test_new_app_alone_and_twice(tmp_path: Path) -> None:
    done = new_app(tmp_path, "acme")
    assert done.created == [tmp_path / "acme" / "app.json"]
    registry = connector.load(tmp_path / "acme", packaged=False)
    assert set(registry.apps) == {"acme"} and len(registry) == 0
    with pytest.raises(ScaffoldError, match="already exists"):
        new_app(tmp_path, "acme")


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "CONNECTOR_CACHE": "off"}
    return run_cli(*args, cwd=cwd, env=env)


def test_cli_walkthrough(tmp_path: Path) -> None:
    """The integrator's first five minutes, as docs/integrators.md shows them."""
    done = _cli(tmp_path, "new", "acme", "send_event")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "created manifests/acme/app.json",
        "created manifests/acme/send_event.json",
        "created manifests/acme/tests/send_event.json",
        "created docs/modules/acme.send_event.md",
    ]
    done = _cli(tmp_path, "validate", "manifests/acme")
    assert done.stdout == "ok: 1 app(s) (acme), 1 module(s), 1 example file(s)\n", done.stderr
    done = _cli(tmp_path, "test", "acme", "--manifests", "manifests", "--no-packaged")
    assert done.returncode == 0, done.stdout
    assert done.stdout.endswith("3 passed, 0 failed (1 module(s))\n")
    done = _cli(tmp_path, "docs", "--manifests", "manifests", "--no-packaged", "--check")
    assert done.returncode == 0, done.stderr
    done = _cli(tmp_path, "new", "acme", "send_event")
    assert done.returncode == 2
    assert json.loads(done.stderr)["error"]["field"] == "module"


def test_module_added_to_an_existing_app_passes_its_own_cases(tmp_path: Path) -> None:
    """Scaffolding into an app with another connection (here a copy of Segment's)."""
    import shutil

    apps = tmp_path / "manifests"
    shutil.copytree(ROOT / "manifests" / "segment", apps / "segment")
    new_module(apps, "segment", "ping")
    registry = connector.load(apps / "segment", packaged=False)
    results = [r for r in run_fixtures(registry) if r.module == "segment.ping"]
    assert len(results) == 3
    assert all(r.ok for r in results), [r.problems for r in results if not r.ok]


def test_a_refused_scaffold_writes_nothing(tmp_path: Path) -> None:
    apps, docs = tmp_path / "manifests", tmp_path / "docs"
    docs.mkdir()
    (docs / "beta.foo.md").write_text("hand-written")
    with pytest.raises(ScaffoldError):
        new_module(apps, "beta", "foo", docs)
    assert (docs / "beta.foo.md").read_text() == "hand-written"
    assert not (apps / "beta").exists()


def test_names_with_a_trailing_newline_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError):
        new_module(tmp_path, "nl\n", "m")
    assert list(tmp_path.iterdir()) == []


# -- every kind with every auth ---------------------------------------------------------

from connector.tools.cli import main as cli_main  # noqa: E402
from connector.tools.scaffold import AUTHS, KINDS  # noqa: E402


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_and_auth_passes_validate_and_test(
    tmp_path: Path, kind: str, auth: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`connector new APP MODULE --kind K --auth A`, then `connector validate` and
    `connector test` on what it wrote, unchanged: both pass, every case of the module."""
    apps, docs = tmp_path / "apps", tmp_path / "docs"
    args = ["new", "acme", "things", "--dir", str(apps), "--docs", str(docs)]
    assert cli_main([*args, "--kind", kind, "--auth", auth]) == 0
    assert cli_main(["validate", str(apps / "acme")]) == 0
    assert cli_main(["test", "acme", "--manifests", str(apps), "--no-packaged"]) == 0
    out = capsys.readouterr().out
    assert "0 failed (1 module(s))" in out, out
    registry = connector.load(apps / "acme", packaged=False)
    assert registry.get("acme.things").manifest.kind == kind
    assert registry.apps["acme"].manifest.connection.auth.type == auth
    check_json_schema(registry)
    results = run_fixtures(registry)
    assert len(results) >= 3 and all(r.ok for r in results)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_added_to_an_existing_app_passes(tmp_path: Path, kind: str) -> None:
    new_module(tmp_path, "acme", "first", auth="basic")
    new_module(tmp_path, "acme", "second", kind=kind)
    registry = connector.load(tmp_path / "acme", packaged=False)
    assert [r.problems for r in run_fixtures(registry) if not r.ok] == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--kind", "webhook", "unknown kind 'webhook'"), ("--auth", "oauth", "unknown auth 'oauth'")],
)
def test_unknown_kind_or_auth_is_refused(
    tmp_path: Path, option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["new", "acme", "things", "--dir", str(tmp_path), option, value]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "acme").exists()
