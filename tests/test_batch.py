"""Batch mode: many bundles through one module, packed into /v1/batch (real sink)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import connector
from connector.testing.sink import Fault, Sink
from tests.conftest import FAST_RETRY, WRITE_KEY, run_cli

ROOT = Path(__file__).resolve().parent.parent


def run_batch_cli(sink: Sink, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`connector run segment.track --batch PATH` against the sink, as a host runs it."""
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    return run_cli("run", "segment.track", *flags, "-c", conn, "--batch", str(path))


def track(i: int, **extra: Any) -> dict[str, Any]:
    return {"event": f"E{i}", "userId": f"u{i}", **extra}


def test_results_in_input_order_with_per_item_errors(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    inputs = [track(i) for i in range(10)]
    inputs[3] = {"event": "no identity"}
    inputs[6] = track(6, customProperties={"blob": "x" * 40_000})  # over 32 KB
    results = list(engine.run_batch("segment.track", connection, inputs))
    assert len(results) == 10
    assert isinstance(results[3], connector.DataError) and results[3].field == "userId"
    assert isinstance(results[6], connector.DataError) and "32,768" in results[6].message
    for i, result in enumerate(results):
        if i not in (3, 6):
            assert isinstance(result, list)
            assert result[0]["event"] == f"E{i}" and result[0]["success"] is True
    [record] = sink.received()
    assert record["path"] == "/v1/batch"
    assert record["auth"] == "basic"
    assert [m["event"] for m in record["body"]["batch"]] == [
        f"E{i}" for i in range(10) if i not in (3, 6)
    ]
    assert record["body"]["sentAt"].endswith("Z")
    # Each item is the very message a single run would send, messageId included.
    ids = {r[0]["messageId"] for r in results if isinstance(r, list)}
    assert ids == {m["messageId"] for m in record["body"]["batch"]}


def test_packing_respects_both_limits_at_volume(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    results = list(engine.run_batch("segment.track", connection, (track(i) for i in range(5001))))
    assert all(isinstance(r, list) for r in results)
    records = sink.received()
    assert len(records) >= 3
    for record in records:
        assert len(record["body"]["batch"]) <= 2500
        assert len(json.dumps(record["body"], separators=(",", ":")).encode()) <= 500 * 1024
    assert sum(len(r["body"]["batch"]) for r in records) == 5001


def test_packer_message_count_limit() -> None:
    from connector.runs.batch import _Packer, PendingItem

    packer = _Packer(max_items=3, max_bytes=10_000, overhead=100)
    taken = []
    for _ in range(7):
        if not packer.fits(b"x" * 10):
            taken.append(len(packer.take()[0]))
        packer.add(PendingItem(), b"x" * 10)
    taken.append(len(packer.take()[0]))
    assert taken == [3, 3, 1]


def test_packing_respects_the_byte_limit(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    padding = "p" * 20_000  # ~20 KB messages: 500 KB fits about 24
    results = list(
        engine.run_batch(
            "segment.track",
            connection,
            (track(i, customProperties={"pad": padding}) for i in range(60)),
        )
    )
    assert all(isinstance(r, list) for r in results)
    records = sink.received()
    assert len(records) >= 3
    for record in records:
        size = len(json.dumps(record["body"], separators=(",", ":")).encode())
        assert size <= 500 * 1024
    assert sum(len(r["body"]["batch"]) for r in records) == 60


def test_streaming_yields_before_the_input_ends(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    consumed = 0

    def inputs() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        for i in range(6000):
            consumed += 1
            yield track(i)

    results = engine.run_batch("segment.track", connection, inputs())
    first = next(results)
    assert isinstance(first, list)
    assert consumed < 6000  # the first batch went out while input was still unread
    assert sum(1 for _ in results) == 5999


def test_invalid_items_only_send_nothing(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    results = list(engine.run_batch("segment.track", connection, [{"event": "x"}] * 3))
    assert all(isinstance(r, connector.DataError) for r in results)
    assert sink.requests_count == 0


def test_a_failed_batch_gives_every_item_the_error(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    sink.inject(Fault(status=401))
    results = list(engine.run_batch("segment.track", connection, [track(i) for i in range(4)]))
    assert all(isinstance(r, connector.InvalidAccessTokenError) for r in results)
    assert sink.received() == []


def test_non_batchable_module_is_refused(engine: connector.Engine, connection: dict) -> None:
    with pytest.raises(connector.InvalidConfigurationError) as info:
        list(engine.run_batch("segment.api_call", connection, [{"url": "/v1/x"}]))
    assert "batch" in info.value.message


def test_arun_batch_matches_run_batch(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    inputs = [track(i) for i in range(3000)]
    inputs[10] = {"event": "bad"}

    async def go() -> list[Any]:
        try:
            return [
                r
                async for r in engine.arun_batch("segment.track", connection, inputs, concurrency=2)
            ]
        finally:
            await engine.aclose()

    results = asyncio.run(go())
    assert len(results) == 3000
    assert isinstance(results[10], connector.DataError)
    events = [r[0]["event"] for i, r in enumerate(results) if i != 10]
    assert events == [f"E{i}" for i in range(3000) if i != 10]
    assert len(sink.messages()) == 2999


def test_cli_batch_prints_one_line_per_input(sink: Sink, tmp_path: Path) -> None:
    lines = [json.dumps(track(i)) for i in range(5)]
    lines.insert(2, json.dumps({"event": "no identity"}))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 1  # one input failed
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 6
    assert out[2]["error"]["type"] == "DataError"
    assert [o["bundles"][0]["event"] for i, o in enumerate(out) if i != 2] == [
        f"E{i}" for i in range(5)
    ]
    assert len(sink.messages()) == 5
    assert WRITE_KEY not in done.stdout + done.stderr


def test_cli_batch_bad_line_is_that_lines_error(sink: Sink, tmp_path: Path) -> None:
    """A bad line is its own result, in place; the lines around it still run."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"event": "A", "userId": "u"}\nnot json\n[1]\n{"event": "B", "userId": "u"}\n')
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert out[0]["bundles"][0]["event"] == "A"
    assert "line 2" in out[1]["error"]["message"] and out[1]["error"]["type"] == "DataError"
    assert "line 3" in out[2]["error"]["message"]
    assert out[3]["bundles"][0]["event"] == "B"
    assert [m["event"] for m in sink.messages()] == ["A", "B"]


def test_cli_batch_refuses_dry_run(sink: Sink, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"event": "A", "userId": "u"}\n')
    done = run_batch_cli(sink, path, "--dry-run")
    assert done.returncode == 2
    assert json.loads(done.stderr)["error"]["field"] == "--dry-run"
    assert sink.requests_count == 0


def test_an_input_that_breaks_a_limit_of_python_is_its_own_error(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    inputs = [
        track(0),
        track(1, revenue="1" * 5000),  # over int()'s 4,300 digits
        track(2, customProperties={"deep": deep}),
        track(3, customProperties="[" * 100_000 + "]" * 100_000),
        track(4),
    ]
    results = list(engine.run_batch("segment.track", connection, inputs))
    assert [type(r).__name__ for r in results] == [
        "list",
        "DataError",
        "DataError",
        "DataError",
        "list",
    ]
    assert [m["event"] for m in sink.messages()] == ["E0", "E4"]


def test_arun_batch_raises_a_failing_send_like_run_batch(
    registry: connector.Registry, sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """A send that fails outside HTTP (here the store) is raised, never dropped."""
    from connector.runs.incomplete import IncompleteStore

    class BrokenStore(IncompleteStore):
        def begin_batch(self, *args: Any) -> str:
            raise RuntimeError("disk full")

    with BrokenStore(tmp_path / "s.sqlite") as store:
        engine = connector.Engine(registry, incomplete=store)

        async def go() -> list[Any]:
            try:
                return [
                    r
                    async for r in engine.arun_batch(
                        "segment.track", connection, [track(i) for i in range(5)]
                    )
                ]
            finally:
                await engine.aclose()

        with pytest.raises(RuntimeError, match="disk full"):
            asyncio.run(go())
        with pytest.raises(RuntimeError, match="disk full"):
            list(engine.run_batch("segment.track", connection, [track(0)]))


def _echo_app(tmp_path: Path, output: Any, headers: Any = None, body: Any = None) -> Path:
    """The Segment app plus a batchable ``segment.echo`` with its own output template."""
    import shutil

    app = tmp_path / "segment"
    shutil.copytree(ROOT / "manifests" / "segment", app, ignore=shutil.ignore_patterns("tests"))
    track_manifest = json.loads((app / "track.json").read_text())
    track_manifest["id"] = "segment.echo"
    track_manifest["output"] = {"bundle": output}
    if headers is not None:
        track_manifest["request"]["headers"] = headers
    if body is not None:
        track_manifest["request"]["body"] = body
    (app / "echo.json").write_text(json.dumps(track_manifest))
    app_manifest = json.loads((app / "app.json").read_text())
    app_manifest["modules"].append("echo.json")
    (app / "app.json").write_text(json.dumps(app_manifest))
    return app


def test_batch_outputs_match_single_runs_when_they_read_parameters_and_headers(
    sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """A batch keeps only what the output template needs of each waiting item; an
    output that reads the parameters, the run and per-item headers still gets each
    item's own, exactly as a single run renders them."""
    output = {
        "event": "{{ parameters.event }}",
        "id": "{{ run.id }}",
        "sent": "{{ request.body.messageId }}",
        "shard": "{{ request.headers['X-Shard'] }}",
        "method": "{{ request.method }}",
        "ok": "{{ response.body.success }}",
    }
    app = _echo_app(tmp_path, output, {"X-Shard": "{{ parameters.userId[-1] }}"})
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        inputs = [track(i) for i in range(12)]
        inputs[4] = {"event": "no identity"}
        results = list(engine.run_batch("segment.echo", connection, inputs))
        single = engine.run("segment.echo", connection, track(7))
    for i, result in enumerate(results):
        if i == 4:
            assert isinstance(result, connector.DataError)
            continue
        assert isinstance(result, list)
        [bundle] = result
        assert bundle["event"] == f"E{i}" and bundle["shard"] == str(i)[-1]
        assert bundle["id"] == bundle["sent"] and bundle["method"] == "POST"
        assert bundle["ok"] is True
    assert set(single[0]) == set(results[7][0])  # type: ignore[index]
    ids = [m["messageId"] for m in sink.messages()[:11]]
    assert ids == [r[0]["id"] for r in results if isinstance(r, list)]  # type: ignore[index]


def test_batch_output_that_never_names_parameters_renders_the_same(
    sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """Items are not kept with their parameters when the output never names them: the
    bundle is the same as a single run's, and a template that binds the name itself
    (a loop variable) still reads the scope's outside its loop."""
    shadowed = (
        "{% for parameters in ['m'] %}{{ parameters }}{% endfor %}"
        "-{{ parameters.event }}-{{ request.body.event }}"
    )
    app = _echo_app(tmp_path, {"text": shadowed})
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, [track(1), track(2)]))
        plain = list(engine.run_batch("segment.track", connection, [track(3)]))
        single = engine.run("segment.track", connection, track(3))
    assert [r[0]["text"] for r in results] == ["m-E1-E1", "m-E2-E2"]  # type: ignore[index]
    assert plain[0][0].keys() == single[0].keys()  # type: ignore[index]
    assert plain[0][0]["properties"] == single[0]["properties"]  # type: ignore[index]


def test_batch_shows_each_items_headers_in_its_own_order(
    sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """Headers built by a template may differ in order only: each bundle still shows
    its own item's, as its single run would."""
    app = _echo_app(
        tmp_path, "{{ request.headers | list | join(',') }}", "{{ parameters.context }}"
    )
    pairs = [{"key": "X-A", "value": "1"}, {"key": "X-B", "value": "2"}]
    inputs = [track(i, context=pairs if i % 2 else pairs[::-1]) for i in range(4)]
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles
    assert [r[0] for r in results] == [  # type: ignore[index]
        "X-B,X-A,Content-Type",
        "X-A,X-B,Content-Type",
        "X-B,X-A,Content-Type",
        "X-A,X-B,Content-Type",
    ]


def test_a_store_set_during_a_batch_run_applies_to_the_next_run(
    registry: connector.Registry, sink: Sink, connection: dict, tmp_path: Path
) -> None:
    from connector.runs.incomplete import IncompleteStore

    with (
        connector.Engine(registry, retry=FAST_RETRY) as engine,
        IncompleteStore(tmp_path / "s.sqlite") as store,
    ):
        run = engine.run_batch("segment.track", connection, (track(i) for i in range(2600)))
        first = next(run)  # the first batch (2,500 items) is out and answered
        engine.incomplete = store
        rest = list(run)
        assert len(rest) == 2599 and all(isinstance(r, list) for r in [first, *rest])
        assert store.executions() == []  # this run was planned without it
        sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
        failed = list(engine.run_batch("segment.track", connection, [track(0)]))
        assert isinstance(failed[0], connector.RunError) and failed[0].incomplete_id
        assert len(store.executions()) == 1  # the next run writes ahead


MERGED_OUTPUTS = [
    # (output template, rendered once per batch response?)
    ("{{ request.body | merge({'ok': response.body.success}) }}", True),
    ("{{ request.body | merge({'status': response.status, 'to': connection.host}) }}", True),
    ("{{ request.body | merge(response.body) }}", True),
    ("{{ request.body | merge({'event': response.status}) }}", True),  # X wins a clash
    ("{{ request.body | merge(none) }}", True),
    ("{{ request.body | merge({'again': parameters.event}) }}", False),
    ("{{ request.body | merge(parameters) }}", False),  # a bare name is read too
    ("{{ request.body | merge(request) }}", False),
    ("{{ request.body | merge({'has_id': run.id is string}) }}", False),
    ("{{ request.body | merge({'n': request.body.event}) }}", False),
    ("{{ request.body | merge('text') }}", True),  # fails: each item gets the error
    ("{{ request.body | merge(response.body.success) }}", True),  # fails: not an object
    ("{{ {'a': 1} | merge(request.body) }}", False),
]


@pytest.mark.parametrize(("output", "per_batch"), MERGED_OUTPUTS)
def test_merged_outputs_match_single_runs(
    sink: Sink, connection: dict, tmp_path: Path, output: str, per_batch: bool
) -> None:
    """``{{ request.body | merge(X) }}`` with an X that reads only the response and the
    connection is rendered once per batch response; every bundle (or error) is still
    exactly its single run's."""
    from connector.runs.batch import BatchPlan

    app = _echo_app(tmp_path, output)
    inputs = [track(i, messageId=f"m-{i}", timestamp="2026-11-25T10:00:00.000Z") for i in range(5)]
    inputs[2] = {"event": "no identity"}
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        plan = BatchPlan(engine, "segment.echo", connection)
        assert plan.bundles.merge_per_batch is per_batch
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles: list[Any] = []
        for item in inputs:
            try:
                singles.append(engine.run("segment.echo", connection, item))
            except connector.RunError as exc:
                singles.append(exc)
    for result, single in zip(results, singles, strict=True):
        if isinstance(single, connector.RunError):
            assert type(result) is type(single) and result.message == single.message  # type: ignore[union-attr]
        else:
            assert result == single
    bundles = [r[0] for r in results if isinstance(r, list)]
    if len(bundles) > 1 and bundles[0]:
        bundles[0].clear()  # bundles share nothing: emptying one leaves the others
        assert all(bundles[1:])


def test_the_merged_object_is_rendered_once_per_batch_response(
    engine: connector.Engine, sink: Sink, connection: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.runs.batch_items as batch_module

    calls: list[int] = []
    real = batch_module.output_bundles

    def counted(*args: Any) -> list[Any]:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(batch_module, "output_bundles", counted)
    results = list(engine.run_batch("segment.track", connection, [track(i) for i in range(3000)]))
    assert all(isinstance(r, list) and r[0]["success"] is True for r in results)
    assert len(sink.received()) == 2 and len(calls) == 2  # two batches, one render each


def test_items_of_any_body_kind_match_single_runs(tmp_path: Path) -> None:
    """After the first item, items whose body is a JSON object or list share the batch's
    head and build no request of their own; other bodies (text, numbers, null) build
    theirs. Either way each bundle is its single run's. (A mock server: the sink, like
    Segment, refuses bodies that are not objects.)"""
    import httpx

    output = "{{ request.method }} {{ request.headers | list | join(',') }} {{ request.body }}"
    app = _echo_app(tmp_path, output, body="{{ parameters.event }}")
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, json={"success": True})

    events = ['{"a": 1}', "[1, 2]", '"text"', "7", '{"b": [true]}', "null", "[]"]
    inputs = [track(i, event=event) for i, event in enumerate(events)]
    connection = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    client = httpx.Client(transport=httpx.MockTransport(answer))
    with connector.Engine(connector.load(app, packaged=False), client=client) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles
    assert json.loads(sent[0])["batch"] == [{"a": 1}, [1, 2], "text", 7, {"b": [True]}, None, []]


ODD_PROPERTIES: list[Any] = [
    [{"key": "plain", "value": "x"}],
    [{"key": "secret", "value": f"it is {WRITE_KEY}"}],  # replaced in the bundle
    [{"key": "nothing", "value": None}],  # null in the message
    [{"key": "word", "value": "nullable"}],  # "null" in text: written by the stdlib too
    [{"key": "big", "value": 2**70}],  # over 64 bits: written by the standard library
    [{"key": "uni", "value": 'caf\u00e9 \u2603 "q" \\\\ \n'}],
    [{"key": "float", "value": 1e300}, {"key": "neg", "value": -0.0}],
    [{"key": "list", "value": [1, {"a": None}]}],
]


@pytest.mark.parametrize("output", [None, "{{ request.body | merge({'s': none}) }}"])
def test_bundles_made_from_message_bytes_match_single_runs(
    sink: Sink, connection: dict, tmp_path: Path, output: str | None
) -> None:
    """A batch makes a bundle from its message's bytes when it can; secrets, nulls and
    integers over 64 bits take the general copy. Each bundle is its single run's, in
    order, whatever the mix in one chunk."""
    app = _echo_app(
        tmp_path,
        output
        or json.loads((ROOT / "manifests/segment/track.json").read_text())["output"]["bundle"],
    )
    inputs = [
        track(i, messageId=f"m-{i}", timestamp="2026-11-25T10:00:00.000Z", customProperties=p)
        for i, p in enumerate(ODD_PROPERTIES * 3)
    ]
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles
    by_key = {next(iter(r[0]["properties"])): r[0]["properties"] for r in results}  # type: ignore[index]
    assert by_key["secret"]["secret"] == "it is [REDACTED]"
    assert by_key["big"]["big"] == 2**70 and type(by_key["big"]["big"]) is int
    assert by_key["nothing"] == {"nothing": None}


@pytest.mark.parametrize("name", ["parameters", "run", "request", "response"])
def test_a_bare_name_merged_is_named(name: str) -> None:
    from connector.templating.templates import TemplateTree, merge_operand_names

    tree = TemplateTree("{{ request.body | merge(" + name + ") }}")
    assert merge_operand_names(tree, ("request", "body")) == {name}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (  # an object for the first item, text (never parsed as JSON) for the others
            {"Content-Type": "text/plain"},
            "{{ parameters.customProperties if parameters.userId == 'u0' else parameters.event }}",
        ),
        ({"X-Static": "1"}, None),  # literal headers with the manifest's object body
        ({"Content-Type": "text/plain"}, None),
    ],
)
def test_literal_headers_encode_batch_items_as_single_runs(
    tmp_path: Path, headers: dict[str, str], body: str | None
) -> None:
    import httpx

    output = "{{ request.headers | list | join(',') }} {{ request.body }}"
    app = _echo_app(tmp_path, output, headers=headers, body=body)
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"success": True}))
    )
    events = ['{"a": 1}', '{"b": 2}', "[3]", "plain"]
    fixed = {"timestamp": "2026-11-25T10:00:00.000Z"}
    inputs = [track(i, event=e, messageId=f"m-{i}", **fixed) for i, e in enumerate(events)]
    inputs[0]["customProperties"] = [{"key": "k", "value": 1}]
    connection = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    with connector.Engine(connector.load(app, packaged=False), client=client) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles


def test_a_nan_in_the_merged_object_stays_nan(sink: Sink, connection: dict, tmp_path: Path) -> None:
    """orjson writes NaN as null: a merged object holding one takes the general copy,
    which keeps the NaN, as a single run's bundle does."""
    import math

    app = _echo_app(tmp_path, "{{ request.body | merge({'n': 1e308 * 10 * 0}) }}")
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, [track(0), track(1)]))
        single = engine.run("segment.echo", connection, track(2))
    for bundles in (*results, single):
        assert isinstance(bundles, list) and math.isnan(bundles[0]["n"])
