"""Property-based tests of the input pipeline (hypothesis).

Whatever JSON a builder maps and whatever earlier bundles hold, a run either yields a
valid message or a DataError: never another exception, and never a request for input
that was refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
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


# -- the parameter plan's shortcut against its interpreted form ----------------------------

_LEAVES = ["text", "text", "text", "number", "integer", "boolean", "date", "email", "url", "any"]


@st.composite
def _leaf(draw: Any, name: str, kind: str | None = None) -> dict[str, Any]:
    kind = kind or draw(st.sampled_from(_LEAVES))
    spec: dict[str, Any] = {"name": name, "type": kind, "required": draw(st.booleans())}
    if kind == "text":
        bounds = draw(st.tuples(st.none() | st.integers(0, 4), st.none() | st.integers(0, 8)))
        if bounds[0] is not None:
            spec["minLength"] = bounds[0]
        if bounds[1] is not None:
            spec["maxLength"] = bounds[1]
        spec.update(
            draw(st.sampled_from([{}, {}, {"pattern": "^[a-z]+$"}, {"format": "currency"}]))
        )
        if draw(st.booleans()):
            spec["default"] = draw(st.sampled_from(["usd", "dflt", ""]))
    elif kind in ("number", "integer"):
        if draw(st.booleans()):
            spec["minimum"] = draw(st.sampled_from([-1, 0, 2.5]))
        if draw(st.booleans()):
            spec["maximum"] = draw(st.sampled_from([0, 10, 1e6]))
        if draw(st.booleans()):
            spec["default"] = 1
    return spec


@st.composite
def _parameter(draw: Any, name: str, depth: int, kind: str | None = None) -> dict[str, Any]:
    kinds = ["leaf", "leaf", "leaf", "select", "keyvalue", "array"]
    if depth > 0:
        kinds.append("collection")
    kind = kind or draw(st.sampled_from(kinds))
    if kind in _LEAVES or kind == "leaf":
        spec: dict[str, Any] = draw(_leaf(name, None if kind == "leaf" else kind))
        return spec
    spec = {"name": name, "type": kind, "required": draw(st.booleans())}
    if kind == "select":
        values = draw(
            st.lists(
                st.sampled_from(["x", "y", "1", 2, True]), min_size=1, max_size=3, unique_by=repr
            )
        )
        spec["options"] = [
            {"value": value, "nested": [draw(_leaf(f"{name}_n{i}"))] if draw(st.booleans()) else []}
            for i, value in enumerate(values)
        ]
    elif kind == "keyvalue":
        if draw(st.booleans()):
            spec["reserved"] = {"names": ["email", "firstName"], "use": "traits.{name}"}
    elif kind == "array":
        if draw(st.booleans()):
            spec["items"] = (
                draw(_leaf("item"))
                if depth == 0 or draw(st.booleans())
                else {"name": "item", "type": "collection", "fields": draw(_level(depth - 1))}
            )
        if draw(st.booleans()):
            spec["minItems"] = 1
        if draw(st.booleans()):
            spec["maxItems"] = 3
    else:
        spec["fields"] = draw(_level(depth - 1))
    return spec


@st.composite
def _level(draw: Any, depth: int) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    return [draw(_parameter(name, depth)) for name in names]


_MAPPED = [
    "{{ hook.a }}",
    "{{ hook.missing }}",
    "{{ hook.n }}",
    "{{ hook.none.x }}",
    "{{ hook.list }}",
    "{{ hook }}",
    "{{ 1 / 0 }}",
    "{{",
    "usd",
    "EUR",
    "2026-01-02T03:04:05Z",
    "ada@example.com",
    "https://example.com/a",
    "19.99",
    "true",
]
_EDGES = [
    "",
    "a",
    "ab",
    "abcd",
    "abcdefgh",
    "abcdefghi",
    "ABC",
    0,
    -1,
    2.5,
    10,
    11,
    1e6,
    1e7,
    3.0,
    "3",
]
_values = st.recursive(
    json_scalars | st.sampled_from(_MAPPED) | st.sampled_from(_EDGES),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["a", "b", "c", "key", "value", "x_n0"]), children, max_size=4
        )
        | st.lists(
            st.fixed_dictionaries(
                {
                    "key": st.sampled_from(
                        ["k", "Email", "first_name", "", "{{ hook.a }}", "{{ hook.missing }}"]
                    ),
                    "value": children,
                }
            ),
            max_size=3,
        )
    ),
    max_leaves=10,
)
_CONTEXT = {"hook": {"a": "abc", "n": "7", "none": None, "list": ["1", 2]}}


_KEYS = st.sampled_from(
    ["k", "j", "k", "Email", "first_name", "", 3, "{{ hook.a }}", "{{ hook.missing }}"]
)


def _value_for(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one field, mostly of its kind and near its bounds, sometimes anything."""
    kind = spec["type"]
    near: st.SearchStrategy[Any]
    if kind == "text":
        # Lengths at and around the field's bounds, where a shortcut could go wrong.
        bounds = {spec.get("minLength") or 0, spec.get("maxLength") or 4}
        lengths = sorted({max(0, b + d) for b in bounds for d in (-1, 0, 1)})
        texts = ["abcdefghij"[:n] for n in lengths]
        specials = ["usd", "EUR", "XYZ", "a{b", "{{ hook.a }}", " ", "ab1", 5, None]
        near = st.sampled_from([*texts, *specials]) | st.text(alphabet="abXY{} ", max_size=10)
    elif kind in ("number", "integer"):
        edges = [
            edge + delta
            for edge in (spec.get("minimum"), spec.get("maximum"), 0)
            if edge is not None
            for delta in (-1, -0.5, 0, 0.5, 1)
        ]
        specials = ["7", "2.5", "x", True, math.inf, math.nan, 2**70, "{{ hook.n }}"]
        near = st.sampled_from([*edges, *(int(edge) for edge in edges), *specials])
    elif kind == "select":
        values = [option["value"] for option in spec["options"]]
        near = st.sampled_from([*values, *map(str, values), "zz", 1, False])
    elif kind == "keyvalue":
        pair = st.fixed_dictionaries(
            {
                "key": _KEYS,
                "value": st.sampled_from([1, "v", None, "{{ hook.a }}", "{{ hook.missing }}", [1]]),
            }
        )
        pairs = st.lists(pair, max_size=4)
        near = pairs | st.dictionaries(st.sampled_from(["k", "Email", "x"]), _values, max_size=3)
    elif kind == "array":
        items = spec.get("items")
        near = st.lists(_value_for(items) if items else _values, max_size=4)
    elif kind == "collection":
        near = _input_for(spec["fields"])
    else:
        near = st.sampled_from(
            ["2026-01-02T03:04:05Z", "ada@example.com", "https://e.com/a", "x", 1]
        )
    return st.one_of(near, near, near, _values)


def _input_for(specs: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Parameters for a level: some of its fields (options' nested ones too), now and
    then an unknown one."""
    fields = {spec["name"]: _value_for(spec) for spec in specs}
    for spec in specs:
        for option in spec.get("options") or ():
            fields.update({nested["name"]: _value_for(nested) for nested in option["nested"]})
    return st.fixed_dictionaries(
        {name: st.one_of(value, value, value, st.none()) for name, value in fields.items()},
        optional={"zz": _values},
    )


def _outcome(plan: Any, raw: dict[str, Any]) -> Any:
    try:
        values = plan.check(raw, _CONTEXT)
    except connector.DataError as exc:
        return ("error", exc.field, exc.message, [fault.to_dict() for fault in exc.faults])
    return ("values", json.dumps(values, default=repr, sort_keys=True))


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_plan_shortcut_equals_the_interpreted_checks(data: Any) -> None:
    """A plan checks the commonest clean values by a shortcut (and remembers key/value
    keys it accepted): for any manifest and any input, the values or the faults must be
    those of the same plan without the shortcut, on a first run and on later ones."""
    from pydantic import ValidationError

    from connector.core.validation import ParameterPlan
    from connector.format.manifest import Parameter

    try:
        specs = [Parameter.model_validate(spec) for spec in data.draw(_level(2), label="specs")]
    except ValidationError:
        event("specs refused by the format")
        return
    raw = data.draw(_input_for([spec.model_dump(by_alias=True) for spec in specs]), label="raw")
    interpreted = _outcome(ParameterPlan(specs, shortcuts=False), raw)
    event(f"{interpreted[0]} ({len(interpreted[3]) if interpreted[0] == 'error' else 'ok'})")
    plan = ParameterPlan(specs)
    assert _outcome(plan, raw) == interpreted
    assert _outcome(plan, raw) == interpreted  # keys accepted on the first run


@pytest.mark.parametrize(
    "kind", ["text", "number", "integer", "keyvalue", "select", "array", "collection"]
)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_each_field_shortcut_equals_its_interpreted_check(kind: str, data: Any) -> None:
    """The same, one field of each kind at a time (where bounds and clean values are
    hit often), through one plan run after run, as a module's plan is."""
    from pydantic import ValidationError

    from connector.core.validation import ParameterPlan
    from connector.format.manifest import Parameter

    drawn = data.draw(_parameter("a", 1, kind), label="spec")
    try:
        spec = Parameter.model_validate(drawn)
    except ValidationError:
        return
    plan, interpreted = ParameterPlan([spec]), ParameterPlan([spec], shortcuts=False)
    for value in data.draw(st.lists(_value_for(drawn), min_size=2, max_size=4), label="runs"):
        assert _outcome(plan, {"a": value}) == _outcome(interpreted, {"a": value})
