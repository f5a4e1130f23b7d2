"""Incomplete executions: failed runs are kept (write-ahead) and replayed unchanged."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

import connector
from connector.runs.incomplete import IncompleteStore
from connector.testing.sink import Fault, Sink
from tests.conftest import FAST_RETRY, WRITE_KEY, kill_cli_after, run_cli

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "connector"]
TRACK = {"event": "Order Completed", "userId": "u-1", "revenue": "9.5"}
#: One outcome of `retry` and `retry --all`, delivered or not: always these keys.
OUTCOME_KEYS = {
    "id",
    "module",
    "kind",
    "messages",
    "delivered",
    "failedMessages",
    "statusCode",
    "attempts",
    "error",
}


@pytest.fixture
def store(tmp_path: Path) -> IncompleteStore:
    with IncompleteStore(tmp_path / "incomplete.sqlite") as opened:
        yield opened


@pytest.fixture
def stored_engine(registry: connector.Registry, store: IncompleteStore) -> connector.Engine:
    with connector.Engine(registry, retry=FAST_RETRY, incomplete=store) as engine:
        yield engine


def test_success_leaves_nothing(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    stored_engine.run("segment.track", connection, TRACK)
    assert len(store) == 0


def test_retryable_failure_is_stored_and_replayed_unchanged(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    with pytest.raises(connector.RemoteRuntimeError) as info:
        stored_engine.run("segment.track", connection, TRACK)
    execution_id = info.value.incomplete_id
    assert execution_id is not None
    assert info.value.to_dict()["incompleteId"] == execution_id
    [execution] = store.executions()
    assert execution.id == execution_id
    assert execution.state == "failed"
    assert execution.attempts == FAST_RETRY.attempts
    assert execution.error is not None and execution.error["status"] == 503
    assert execution.request["path"] == "/v1/track"
    sent_body = json.loads(execution.to_dict()["request"]["body"]["text"])
    assert execution.message_id == sent_body["messageId"]
    assert sink.received() == []

    [outcome] = store.retry(stored_engine, execution_id, connection)
    assert outcome["delivered"] is True and outcome["statusCode"] == 200
    assert set(outcome) == OUTCOME_KEYS and outcome["failedMessages"] == 0
    [record] = sink.received()
    assert record["body"]["messageId"] == sent_body["messageId"]
    assert record["body"]["timestamp"] == sent_body["timestamp"]
    assert record["auth"] == "basic"
    assert len(store) == 0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_permanent_failures_are_raised_not_stored(
    stored_engine: connector.Engine,
    store: IncompleteStore,
    sink: Sink,
    connection: dict,
    status: int,
) -> None:
    sink.inject(Fault(status=status))
    with pytest.raises(connector.RunError) as info:
        stored_engine.run("segment.track", connection, TRACK)
    assert info.value.status == status
    assert info.value.incomplete_id is None
    assert len(store) == 0


def test_invalid_input_is_never_stored(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    with pytest.raises(connector.DataError):
        stored_engine.run("segment.track", connection, {"event": "E"})
    assert len(store) == 0


def test_failed_retry_updates_the_record(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=500)] * (2 * FAST_RETRY.attempts))
    with pytest.raises(connector.RemoteRuntimeError) as info:
        stored_engine.run("segment.track", connection, TRACK)
    [outcome] = store.retry(stored_engine, str(info.value.incomplete_id), connection)
    assert outcome["delivered"] is False and outcome["error"]["status"] == 500
    assert set(outcome) == OUTCOME_KEYS and outcome["failedMessages"] == 1
    [execution] = store.executions()
    assert execution.attempts == 2 * FAST_RETRY.attempts


def test_no_secret_is_stored(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=502)] * FAST_RETRY.attempts)
    with pytest.raises(connector.RemoteRuntimeError):
        stored_engine.run(
            "segment.track", connection, {**TRACK, "customProperties": {"note": WRITE_KEY}}
        )
    store.close()
    raw = b"".join(p.read_bytes() for p in store.path.parent.iterdir() if p.is_file())
    for form in (WRITE_KEY, base64.b64encode(f"{WRITE_KEY}:".encode()).decode()):
        assert form.encode() not in raw
    with IncompleteStore(store.path) as reopened:
        [execution] = reopened.executions()
        assert "[REDACTED]" in json.dumps(execution.to_dict())
        assert "Authorization" not in execution.request["headers"]


def test_batch_failure_stores_each_item(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    inputs = [{"event": f"E{i}", "userId": f"u{i}"} for i in range(5)]
    results = list(stored_engine.run_batch("segment.track", connection, inputs))
    ids = [r.incomplete_id for r in results if isinstance(r, connector.RunError)]
    # Written ahead once per request: one row holds the batch, each item names it.
    assert len(ids) == 5 and len(set(ids)) == 1
    [row] = store.executions()
    assert row.kind == "batch" and row.items == 5
    sent = [m["messageId"] for m in row.messages()]
    assert len(set(sent)) == 5
    outcomes = store.retry_all(stored_engine, connection)
    assert [(o["delivered"], o["messages"]) for o in outcomes] == [(True, 5)]
    assert [m["messageId"] for m in sink.messages()] == sent  # the same messages
    assert sorted(m["event"] for m in sink.messages()) == [f"E{i}" for i in range(5)]


def test_fault_injection_nothing_lost(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    """1,000 runs; a random third of requests fail (500, 429, dropped connection).
    Every run is delivered exactly once or stored; after retrying, all are delivered."""
    rng = random.Random(20261125)
    faults = []
    for _ in range(1000 * FAST_RETRY.attempts):
        roll = rng.random()
        if roll < 1 / 9:
            faults.append(Fault(status=500))
        elif roll < 2 / 9:
            faults.append(Fault(status=429, retry_after="0"))
        elif roll < 3 / 9:
            faults.append(Fault(drop=True))
        else:
            faults.append(Fault(status=None))  # answered normally
    sink.inject(*faults)

    delivered: set[str] = set()
    stored: set[str] = set()
    for i in range(1000):
        try:
            [bundle] = stored_engine.run(
                "segment.track", connection, {"event": "Fault", "userId": f"u{i}"}
            )
            delivered.add(bundle["messageId"])
        except connector.RunError as exc:
            assert exc.retryable and exc.incomplete_id is not None
            stored.add(store.get(exc.incomplete_id).message_id or "")
    assert len(delivered) + len(stored) == 1000
    seen = [m["messageId"] for m in sink.messages()]
    assert sorted(seen) == sorted(delivered)  # exactly once each, none of the stored ones
    assert len(store) == len(stored)

    sink.clear()  # healthy again
    outcomes = store.retry_all(stored_engine, connection)
    assert all(o["delivered"] for o in outcomes)
    seen = [m["messageId"] for m in sink.messages()]
    assert sorted(seen) == sorted(stored)
    assert len(delivered | set(seen)) == 1000
    assert len(store) == 0


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


def test_cli_list_show_retry_discard(sink: Sink, tmp_path: Path) -> None:
    db = str(tmp_path / "cli.sqlite")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    sink.inject(*[Fault(status=503, retry_after="0")] * 8)
    for event in ("First", "Second"):
        done = cli(
            "run",
            "segment.track",
            "-c",
            conn,
            "-p",
            json.dumps({"event": event, "userId": "u"}),
            "--store",
            db,
        )
        assert done.returncode == 1
        assert json.loads(done.stderr)["error"]["incompleteId"]
    listed = json.loads(cli("incomplete", "list", "--store", db).stdout)["executions"]
    assert [e["state"] for e in listed] == ["failed", "failed"]
    first, second = listed[0]["id"], listed[1]["id"]

    shown = cli("incomplete", "show", first, "--store", db)
    assert json.loads(shown.stdout)["request"]["path"] == "/v1/track"
    assert WRITE_KEY not in shown.stdout

    done = cli("incomplete", "retry", first, "--store", db, "-c", conn)
    assert done.returncode == 0, done.stderr
    assert [m["event"] for m in sink.messages()] == ["First"]

    done = cli("incomplete", "discard", second, "--store", db)
    assert done.returncode == 0
    assert json.loads(cli("incomplete", "list", "--store", db).stdout)["count"] == 0

    missing = cli("incomplete", "show", "nope", "--store", db)
    assert missing.returncode == 2
    assert "no incomplete execution" in json.loads(missing.stderr)["error"]["message"]


def test_sigkill_mid_retry_leaves_the_run_on_disk(sink: Sink, tmp_path: Path) -> None:
    db = str(tmp_path / "kill.sqlite")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    # Every attempt fails and asks to wait 30 s: the process sits in its retry sleep.
    sink.inject(*[Fault(status=503, retry_after="30")] * 20)
    event = json.dumps({"event": "Killed", "userId": "u-k"})
    kill_cli_after(sink, 1, "run", "segment.track", "-c", conn, "-p", event, "--store", db, wait=30)

    with IncompleteStore(db) as store:
        [execution] = store.executions()
        assert execution.state == "pending"  # stored before the send, never settled
        message_id = execution.message_id
    sink.clear()
    done = cli("incomplete", "retry", "--all", "--store", db, "-c", conn)
    assert done.returncode == 0, done.stderr
    [message] = sink.messages()
    assert message["messageId"] == message_id
    assert message["event"] == "Killed"
    assert json.loads(cli("incomplete", "list", "--store", db).stdout)["count"] == 0


def test_retry_never_sends_a_key_to_another_host(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    with pytest.raises(connector.RemoteRuntimeError) as info:
        stored_engine.run("segment.track", connection, TRACK)
    execution_id = str(info.value.incomplete_id)
    # The stored host is not reused with another key: the connection given is the one used.
    [refused] = store.retry(stored_engine, execution_id, {"writeKey": "prod_key_abcdef123"})
    assert refused["delivered"] is False
    assert refused["error"]["type"] == "InvalidConfigurationError"
    assert refused["error"]["field"] == "host"
    with pytest.raises(connector.InvalidConfigurationError):
        store.retry(stored_engine, execution_id, None)
    assert sink.received() == []
    assert len(store) == 1


def test_a_secret_in_the_data_is_not_stored_and_not_replayed_changed(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    with pytest.raises(connector.RemoteRuntimeError) as info:
        stored_engine.run(
            "segment.track", connection, {**TRACK, "customProperties": {"oops": WRITE_KEY}}
        )
    execution = store.get(str(info.value.incomplete_id))
    assert execution.request["redacted"] is True
    [refused] = store.retry(stored_engine, execution.id, connection)
    assert refused["error"]["type"] == "DataError"
    assert "cannot be replayed unchanged" in refused["error"]["message"]
    assert sink.received() == []


def test_ordinary_data_is_replayed_byte_for_byte(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    """Words that merely contain part of a secret are data, not secrets."""
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    params = {**TRACK, "event": "Contest Entered", "customProperties": {"plan": "latest"}}
    with pytest.raises(connector.RemoteRuntimeError) as info:
        stored_engine.run("segment.track", connection, params)
    [outcome] = store.retry(stored_engine, str(info.value.incomplete_id), connection)
    assert outcome["delivered"] is True
    [message] = sink.messages()
    assert message["event"] == "Contest Entered"
    assert message["properties"]["plan"] == "latest"


def test_a_replay_refused_for_good_is_kept_as_rejected(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts, Fault(status=400))
    with pytest.raises(connector.RemoteRuntimeError) as info:
        stored_engine.run("segment.track", connection, TRACK)
    execution_id = str(info.value.incomplete_id)
    [outcome] = store.retry(stored_engine, execution_id, connection)
    assert outcome["error"]["type"] == "DataError" and outcome["error"]["status"] == 400
    assert store.get(execution_id).state == "rejected"
    assert store.retry_all(stored_engine, connection) == []  # skipped, not retried forever
    store.discard(execution_id)
    assert len(store) == 0


# -- replays are checked as fresh runs; the store file is trusted only when private ----


def _failed_run(engine: connector.Engine, sink: Sink, connection: dict) -> str:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    with pytest.raises(connector.RemoteRuntimeError) as info:
        engine.run("segment.track", connection, TRACK)
    return str(info.value.incomplete_id)


def _edit_request(store: IncompleteStore, execution_id: str, **changes: object) -> None:
    import sqlite3

    request = {**store.get(execution_id).request, **changes}
    with sqlite3.connect(store.path) as db:
        db.execute(
            "UPDATE executions SET request = ? WHERE id = ?", (json.dumps(request), execution_id)
        )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"method": "TRACE"}, "method"),
        ({"method": "DELETE"}, "method"),
        ({"path": "/v1/identify"}, "url"),
        ({"path": "http://evil.example/v1/track"}, "url"),
        ({"path": "/../admin"}, "url"),
        ({"headers": {"Host": "evil.example"}}, "headers"),
        ({"headers": {"Authorization": "Basic abc"}}, "headers"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "headers"),
    ],
)
def test_an_edited_row_is_refused_like_a_fresh_run(
    stored_engine: connector.Engine,
    store: IncompleteStore,
    sink: Sink,
    connection: dict,
    changes: dict,
    field: str,
) -> None:
    execution_id = _failed_run(stored_engine, sink, connection)
    _edit_request(store, execution_id, **changes)
    sink.clear()
    [outcome] = store.retry(stored_engine, execution_id, connection)
    assert outcome["delivered"] is False
    assert outcome["error"]["type"] == "DataError"
    assert outcome["error"]["field"] == field
    assert sink.received() == []
    assert store.get(execution_id).claimed is False  # released, still there to discard


def test_an_edited_batch_row_is_refused(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
    list(stored_engine.run_batch("segment.track", connection, [TRACK, TRACK]))
    [row] = store.executions()
    _edit_request(store, row.id, method="PUT")
    sink.clear()
    [outcome] = store.retry_all(stored_engine, connection)
    assert outcome["delivered"] is False and outcome["error"]["field"] == "url"
    assert sink.received() == []


def test_the_store_file_must_be_private(tmp_path: Path) -> None:
    folder = tmp_path / "home"
    folder.mkdir(mode=0o700)
    real = folder / "real.sqlite"
    IncompleteStore(real).close()

    link = folder / "link.sqlite"
    link.symlink_to(real)
    with pytest.raises(PermissionError, match="symbolic link"):
        IncompleteStore(link)

    hard = folder / "hard.sqlite"
    os.link(real, hard)
    with pytest.raises(PermissionError, match="one link"):
        IncompleteStore(hard)
    hard.unlink()

    real.chmod(0o666)
    with pytest.raises(PermissionError, match="yours alone"):
        IncompleteStore(real)
    real.chmod(0o600)

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="not a folder of yours alone"):
        IncompleteStore(shared / "s.sqlite")

    if os.geteuid() == 0:  # root can give the file away to check the owner too
        os.chown(real, 12345, -1)
        with pytest.raises(PermissionError, match="yours alone"):
            IncompleteStore(real)
        os.chown(real, 0, -1)

    created = folder / "new.sqlite"
    IncompleteStore(created).close()
    assert created.stat().st_mode & 0o777 == 0o600


def test_the_cli_reports_an_untrusted_store(tmp_path: Path) -> None:
    real = tmp_path / "real.sqlite"
    IncompleteStore(real).close()
    (tmp_path / "link.sqlite").symlink_to(real)
    done = cli("incomplete", "list", "--store", str(tmp_path / "link.sqlite"))
    assert done.returncode == 2
    assert "symbolic link" in json.loads(done.stderr)["error"]["message"]


# -- claims: two retries never send one row twice ----------------------------------------


def test_two_concurrent_retry_all_deliver_each_row_once(sink: Sink, tmp_path: Path) -> None:
    db = tmp_path / "twice.sqlite"
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    with (
        IncompleteStore(db) as store,
        connector.Engine(connector.load(), retry=FAST_RETRY, incomplete=store) as engine,
    ):
        connection = json.loads(conn)
        for i in range(12):
            sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
            with pytest.raises(connector.RemoteRuntimeError):
                # api_call rows are replayed one by one (not packed): many requests
                engine.run(
                    "segment.api_call",
                    connection,
                    {"method": "POST", "url": "/v1/track", "body": {**TRACK, "event": f"E{i}"}},
                )
    sink.clear()
    sink.inject(*[Fault(status=None, delay=0.1)] * 12)  # slow answers: the two overlap
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "incomplete",
                "retry",
                "--all",
                "--store",
                str(db),
                "-c",
                conn,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outcomes += json.loads(out)
    events = sorted(m["event"] for m in sink.messages())
    assert events == sorted(f"E{i}" for i in range(12))  # each exactly once
    assert len(outcomes) == 12 and all(o["delivered"] for o in outcomes)


def test_a_claim_of_a_live_process_is_respected_and_of_a_dead_one_is_not(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    import socket
    import sqlite3

    execution_id = _failed_run(stored_engine, sink, connection)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = f"{socket.gethostname()}:{sleeper.pid}:x"
        with sqlite3.connect(store.path) as db:
            db.execute(
                "UPDATE executions SET lease_until = ?, claimed_by = ? WHERE id = ?",
                (time.time() + 600, holder, execution_id),
            )
        assert store.get(execution_id).claimed
        sink.clear()
        assert store.retry_all(stored_engine, connection) == []  # held by a live process
        with pytest.raises(connector.InvalidConfigurationError, match="another process"):
            store.retry(stored_engine, execution_id, connection)
        assert store.discard_all() == 0
        assert sink.received() == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not store.get(execution_id).claimed  # its holder ended: the claim is void
    [outcome] = store.retry_all(stored_engine, connection)
    assert outcome["delivered"] is True


def test_retry_all_packs_single_runs_into_the_batch_endpoint(
    stored_engine: connector.Engine, store: IncompleteStore, sink: Sink, connection: dict
) -> None:
    ids = []
    for i in range(10):
        sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
        with pytest.raises(connector.RemoteRuntimeError) as info:
            stored_engine.run("segment.track", connection, {**TRACK, "event": f"E{i}"})
        ids.append(store.get(str(info.value.incomplete_id)).message_id)
    sink.clear()
    outcomes = store.retry_all(stored_engine, connection)
    assert [o["delivered"] for o in outcomes] == [True] * 10
    [record] = sink.received()  # one request, not ten
    assert record["path"] == "/v1/batch"
    assert [m["messageId"] for m in record["body"]["batch"]] == ids
    assert len(store) == 0


# -- the command line: list, show, discard, retry ----------------------------------------


def test_cli_list_filters_and_counts_discard_all_and_show_needs_an_id(
    sink: Sink, tmp_path: Path
) -> None:
    db = str(tmp_path / "cli.sqlite")
    with (
        IncompleteStore(db) as store,
        connector.Engine(connector.load(), retry=FAST_RETRY, incomplete=store) as engine,
    ):
        connection = {"writeKey": WRITE_KEY, "host": sink.url}
        for module, params in [
            ("segment.track", TRACK),
            ("segment.track", TRACK),
            ("segment.identify", {"userId": "u"}),
        ]:
            sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
            with pytest.raises(connector.RemoteRuntimeError):
                engine.run(module, connection, params)
    listed = json.loads(cli("incomplete", "list", "--store", db, "--limit", "1").stdout)
    assert listed["count"] == 3 and listed["shown"] == 1 and len(listed["executions"]) == 1
    listed = json.loads(
        cli("incomplete", "list", "--store", db, "--module", "segment.track").stdout
    )
    assert listed["count"] == 2
    assert {e["module"] for e in listed["executions"]} == {"segment.track"}
    listed = json.loads(cli("incomplete", "list", "--store", db, "--state", "rejected").stdout)
    assert listed == {"count": 0, "shown": 0, "executions": []}

    shown = cli("incomplete", "show", "--store", db)
    assert shown.returncode == 2
    assert "show takes the ID" in json.loads(shown.stderr)["error"]["message"]
    assert "None" not in shown.stderr

    bad = cli("incomplete", "list", "--store", db, "--state", "lost")
    assert bad.returncode == 2

    done = cli("incomplete", "discard", "--all", "--module", "segment.identify", "--store", db)
    assert json.loads(done.stdout) == {"discarded": 1}
    done = cli("incomplete", "discard", "--all", "--store", db)
    assert json.loads(done.stdout) == {"discarded": 2}
    assert json.loads(cli("incomplete", "list", "--store", db).stdout)["count"] == 0


def test_cli_retry_and_retry_all_print_the_same_shape(sink: Sink, tmp_path: Path) -> None:
    db = str(tmp_path / "cli.sqlite")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    for _ in range(2):
        sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts * 4)
        done = cli("run", "segment.track", "-c", conn, "-p", json.dumps(TRACK), "--store", db)
        assert done.returncode == 1
    first = json.loads(cli("incomplete", "list", "--store", db).stdout)["executions"][0]["id"]
    sink.clear()
    one = cli("incomplete", "retry", first, "--store", db, "-c", conn)
    every = cli("incomplete", "retry", "--all", "--store", db, "-c", conn)
    assert one.returncode == every.returncode == 0
    [single], [other] = json.loads(one.stdout), json.loads(every.stdout)
    assert single.keys() == other.keys()
    assert single["delivered"] is other["delivered"] is True
    assert {single["id"], other["id"]} == {first, other["id"]} and single["id"] != other["id"]


def test_the_store_settings_durability_and_delete_cost(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL (durable against a crash or kill), and deletes that
    zero only what costs no extra write (secure_delete=FAST: 2), whatever the SQLite
    build's default (Debian's zeroes every freed page: each delivered batch body
    written twice)."""
    with IncompleteStore(tmp_path / "store.db") as store:
        pragma = store._db.execute
        assert pragma("PRAGMA journal_mode").fetchone() == ("wal",)
        assert pragma("PRAGMA synchronous").fetchone() == (1,)
        assert pragma("PRAGMA secure_delete").fetchone() == (2,)
