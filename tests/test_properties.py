"""Property-based tests of the input pipeline (hypothesis).

Whatever JSON a builder maps and whatever earlier bundles hold, a run either yields a
valid message or a DataError: never another exception, and never a request for input
that was refused.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connector
from tests.conftest import WRITE_KEY

TEMPLATES = [
    "{{ hook.email }}",
    "{{ hook }}",
    "{{ hook.items }}",
    "{{ nope.x }}",
    "{{ 1 / 0 }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ 'a' * 10**9 }}",
    "{% for i in range(10**6) %}x{% endfor %}",
    "{{ hook | tojson }}",
    "{{ '[' * 5000 | fromjson }}",
    "{{ hook.n + 1 }}",
    "{{",
    "{% if %}",
    "2026-01-02T03:04:05Z",
    "19.99",
    "USD",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(TEMPLATES)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["key", "value"]), children, max_size=4
        )
    ),
    max_leaves=12,
)

PARAMETER_NAMES = {
    "segment.track": [
        "event",
        "userId",
        "anonymousId",
        "timestamp",
        "currency",
        "revenue",
        "value",
        "customProperties",
        "messageId",
        "context",
        "integrations",
    ],
    "segment.identify": [
        "userId",
        "anonymousId",
        "timestamp",
        "traits",
        "customTraits",
        "messageId",
        "context",
        "integrations",
    ],
    "segment.api_call": ["url", "method", "headers", "qs", "body"],
}


def parameters_for(module: str) -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from(PARAMETER_NAMES[module]) | st.text(max_size=6)
    return st.dictionaries(names, json_values, max_size=6)


contexts = st.dictionaries(st.sampled_from(["hook", "other"]), json_values, max_size=2)


@pytest.fixture(scope="module")
def counting_engine() -> Any:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"success": True})

    registry = connector.load()
    engine = connector.Engine(registry, client=httpx.Client(transport=httpx.MockTransport(answer)))
    yield engine, sent
    engine.close()


@pytest.mark.parametrize("module", sorted(PARAMETER_NAMES))
@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_valid_message_or_data_error(counting_engine: Any, module: str, data: Any) -> None:
    engine, sent = counting_engine
    parameters = data.draw(parameters_for(module), label="parameters")
    context = data.draw(contexts, label="context")
    before = len(sent)
    try:
        bundles = engine.run(module, {"writeKey": WRITE_KEY}, parameters, context)
    except connector.DataError as exc:
        assert len(sent) == before, "a refused run sent a request"
        assert WRITE_KEY not in str(exc)
        return
    assert len(sent) == before + 1
    request = sent[-1]
    assert request.url.host == "api.segment.io"
    if module != "segment.api_call":
        body = json.loads(request.content)
        assert body["type"] in ("track", "identify")
        assert body.get("userId") or body.get("anonymousId")
        assert len(request.content) <= 32 * 1024
        assert bundles[0]["messageId"] == body["messageId"]
    assert WRITE_KEY not in json.dumps(bundles, default=str)


TREE_MODULES = [
    "segment.track",
    "segment.identify",
    "segment.api_call",
    "segment.group",
    "segment.page",
    "livelike.track_event",
]


@pytest.mark.parametrize("module_id", TREE_MODULES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_generated_tree_functions_match_node_by_node(module_id: str, data: Any) -> None:
    """The generated whole-tree functions give exactly the node-by-node results."""
    from connector.core.engine import ENGINE_INFO
    from connector.core.validation import validate_parameters

    module = REGISTRY.get(module_id)
    names = [p.name for p in module.manifest.parameters]
    raw = data.draw(st.dictionaries(st.sampled_from(names), json_values, max_size=6))
    try:
        values = validate_parameters(module.manifest.parameters, [], raw, {"hook": {}})
    except connector.DataError:
        return
    scope = {
        "parameters": values,
        "connection": {},
        "engine": ENGINE_INFO,
        "run": {"id": "r", "timestamp": "t"},
        "app": {"name": "a", "version": "1"},
    }
    for tree in (module.body, module.headers, module.query, module.url):
        assert tree._function is not None or tree.literal
        outcomes = []
        for render in (tree.render, tree.render_by_node):
            try:
                outcomes.append(("ok", render(scope)))
            except Exception as exc:
                outcomes.append(("error", type(exc).__name__))
        assert outcomes[0] == outcomes[1]


REGISTRY = connector.load()


_REGISTRY = connector.load()


def _checked(fill: Any, level: Any, raw: dict[str, Any], context: dict[str, Any]) -> Any:
    from connector.core.validation import Values

    out = Values()
    try:
        fill(raw, context, "", out)
    except connector.DataError as exc:
        return ("error", exc.field, exc.message)
    return ("values", json.dumps(out, default=repr, sort_keys=True))


@pytest.mark.parametrize("module", sorted(PARAMETER_NAMES))
@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_generated_level_checks_equal_the_generic_loop(module: str, data: Any) -> None:
    """Each level's checks run as generated straight-line code: for any input, the
    result or the error must be the generic loop's, field for field."""
    from connector.core.validation import _fill, _LevelPlan

    plan = _LevelPlan(_REGISTRY.get(module).manifest.parameters)
    raw = data.draw(parameters_for(module), label="parameters")
    raw = {k: v for k, v in raw.items() if k in plan.known}
    context = data.draw(contexts, label="context")
    generic = _checked(lambda *a: _fill(plan, *a), plan, raw, context)
    assert _checked(plan.fill, plan, raw, context) == generic
