"""`connector validate` checks each example file against its module: the module id,
parameter and connection names (in cases that expect success), and the keys of the
module's kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from connector.tools.cli import main as cli_main
from connector.tools.scaffold import new_module
from tests.conftest import run_cli

CASES: list[tuple[str, str, Any, str, str]] = [
    ("action", "module", "acme.other", "$.module", "examples of 'acme.things'"),
    (
        "action",
        "cases.0.parameters",
        {"name": "x", "nope": 1},
        "$.cases[0].parameters.nope",
        "unknown parameter 'nope'",
    ),
    (
        "action",
        "connection",
        {"apiKey": "k", "token": "t"},
        "$.connection.token",
        "connection field",
    ),
    (
        "action",
        "cases.0.delivery",
        {"body": {}},
        "$.cases[0].delivery",
        "does not apply to a action",
    ),
    ("search", "cases.0.state", {"since": None}, "$.cases[0].state", "does not apply to a search"),
    ("action", "cases.1.responses", [{"status": 200}], "$.cases[1].responses", "to a action"),
    (
        "instant_trigger",
        "cases.0.response",
        {"status": 200},
        "$.cases[0].response",
        "instant_trigger",
    ),
    ("trigger", "cases.0.request", {"method": "GET"}, "$.cases[0].request", "to a trigger"),
]


def _set(data: Any, dotted: str, value: Any) -> None:
    *head, last = dotted.split(".")
    for part in head:
        data = data[int(part)] if part.isdigit() else data[part]
    data[last] = value


@pytest.mark.parametrize(("kind", "where", "value", "path", "message"), CASES)
def test_validate_refuses_examples_that_do_not_fit(
    tmp_path: Path,
    kind: str,
    where: str,
    value: Any,
    path: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new_module(tmp_path, "acme", "things", kind=kind)
    examples = tmp_path / "acme" / "tests" / "things.json"
    assert cli_main(["validate", str(tmp_path / "acme")]) == 0
    data = json.loads(examples.read_text())
    _set(data, where, value)
    examples.write_text(json.dumps(data))
    capsys.readouterr()
    assert cli_main(["validate", str(tmp_path / "acme")]) == 3
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["source"] == str(examples)
    assert error["path"] == path
    assert message in error["message"]


def test_an_error_case_may_name_an_unknown_parameter(tmp_path: Path) -> None:
    """Shipped examples show that unknown fields are refused: that case stays valid."""
    new_module(tmp_path, "acme", "things")
    examples = tmp_path / "acme" / "tests" / "things.json"
    data = json.loads(examples.read_text())
    data["cases"][1]["parameters"]["nope"] = 1
    examples.write_text(json.dumps(data))
    done = run_cli("validate", str(tmp_path / "acme"))
    assert done.returncode == 0, done.stderr
    shutil.rmtree(tmp_path / "acme")
