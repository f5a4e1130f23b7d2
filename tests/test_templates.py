"""Unit tests for connector.templating.templates: rendering, trees, filters, sandbox, bounds."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import jinja2
import pytest
from jinja2.exceptions import SecurityError, TemplateAssertionError, TemplateSyntaxError

from connector.core.values import Values
from connector.templating.templates import (
    MAX_OUTPUT,
    CompiledTemplate,
    TemplateTree,
    compile_template,
    compile_tree,
    environment,
    is_template,
    referenced_names,
)

SCOPE: dict[str, Any] = {
    "parameters": {
        "traits": {"email": "ada@example.com", "age": 36},
        "tags": ["a", "b"],
        "count": 3,
        "price": 19.99,
        "nothing": None,
        "flag": True,
    },
    "webhook": {"name": "Ada", "ok": False},
}


def render(source: str, scope: dict[str, Any] | None = None) -> Any:
    return CompiledTemplate(source).render(SCOPE if scope is None else scope)


#: CompiledTemplate.render may take a fast path for simple expressions; when the full
#: Jinja evaluation is exposed too (render_jinja), results must not depend on the path.
PATHS = ["render"] + (["render_jinja"] if hasattr(CompiledTemplate, "render_jinja") else [])


def render_by(path: str, source: str, scope: dict[str, Any] | None = None) -> Any:
    template = CompiledTemplate(source)
    return getattr(template, path)(SCOPE if scope is None else scope)


# -- CompiledTemplate: native types and text ----------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "{{ parameters.traits }}",
            {"email": "ada@example.com", "age": 36},
            id="dict-stays-dict",
        ),
        pytest.param("{{ parameters.count }}", 3, id="int-stays-int"),
        pytest.param("{{ parameters.price }}", 19.99, id="float-stays-float"),
        pytest.param("{{ parameters.tags }}", ["a", "b"], id="list-stays-list"),
        pytest.param("{{ parameters.nothing }}", None, id="none-stays-none"),
        pytest.param("{{ parameters.flag }}", True, id="bool-stays-bool"),
        pytest.param("{{ webhook.ok }}", False, id="false-stays-false"),
        pytest.param("{{ {'a': parameters.count} }}", {"a": 3}, id="dict-literal"),
        pytest.param("{{ [1, 2] + [3] }}", [1, 2, 3], id="list-expression"),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_single_expression_keeps_native_type(path: str, source: str, expected: Any) -> None:
    value = render_by(path, source)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("n={{ parameters.count }}", "n=3", id="prefix-text"),
        pytest.param("{{ parameters.count }}!", "3!", id="suffix-text"),
        pytest.param("{{ parameters.count }}{{ parameters.count }}", "33", id="two-expressions"),
        pytest.param("{{ parameters.count }} ", "3 ", id="trailing-space-is-output"),
        pytest.param("  {{ parameters.count }}", "  3", id="leading-space-is-output"),
        pytest.param("{% if webhook.ok %}yes{% else %}no{% endif %}", "no", id="statement"),
        pytest.param(
            "{{ webhook.name }} <{{ parameters.traits.email }}>",
            "Ada <ada@example.com>",
            id="two-with-text",
        ),
        pytest.param("plain text", "plain text", id="literal-through-jinja"),
    ],
)
def test_mixed_text_renders_to_str(source: str, expected: str) -> None:
    value = render(source)
    assert value == expected
    assert isinstance(value, str)


def test_missing_key_of_a_values_dict_renders_none() -> None:
    # validation.Values answers None for a missing key, so optional fields need no guard.
    scope = {"parameters": Values(traits=Values())}
    assert render("{{ parameters.traits.email }}", scope) is None
    assert TemplateTree({"email": "{{ parameters.traits.email }}"}).render(scope) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("plain", False, id="plain"),
        pytest.param("", False, id="empty"),
        pytest.param("{ not: a template }", False, id="single-brace"),
        pytest.param("100% sure", False, id="percent"),
        pytest.param("{{ x }}", True, id="expression"),
        pytest.param("{% if x %}a{% endif %}", True, id="statement"),
        pytest.param("{# comment #}", True, id="comment"),
    ],
)
def test_is_template(text: str, expected: bool) -> None:
    assert is_template(text) is expected


def test_compile_template_helper_returns_compiled_template() -> None:
    template = compile_template("{{ parameters.count }}")
    assert isinstance(template, CompiledTemplate)
    assert template.source == "{{ parameters.count }}"
    assert template.render(SCOPE) == 3


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ nope }}", id="native"),
        pytest.param("x{{ nope }}", id="text"),
        pytest.param("{{ nope.deeper }}", id="attr-of-undefined"),
        pytest.param("{{ parameters.nothing.deeper }}", id="attr-of-none"),
        pytest.param("{% if nope %}a{% endif %}", id="in-condition"),
    ],
)
def test_strict_undefined_raises(source: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        render(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{ nope | default('x') }}", "x", id="default-filter"),
        pytest.param("{{ nope is defined }}", False, id="is-defined-test"),
    ],
)
def test_undefined_can_be_guarded(source: str, expected: Any) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ [nope] }}", id="native-list"),
        pytest.param("{{ {'email': webhook.emial} }}", id="native-dict"),
        pytest.param("x{{ [nope] }}", id="text-list"),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_undefined_inside_a_container_raises(path: str, source: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_by(path, source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{ parameters.tags | reverse }}", ["b", "a"], id="reverse"),
        pytest.param("{{ parameters.tags | map('upper') }}", ["A", "B"], id="map"),
        pytest.param("{{ [1, 2, 3] | select('odd') }}", [1, 3], id="select-with-test"),
        pytest.param("{{ [1, 1, 2] | unique }}", [1, 2], id="unique"),
        pytest.param("{{ {'a': 1} | items }}", [("a", 1)], id="items"),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_native_result_is_materialised(path: str, source: str, expected: Any) -> None:
    value = render_by(path, source)
    assert isinstance(value, list)
    assert value == expected


@pytest.mark.skipif(len(PATHS) < 2, reason="no separate full-Jinja evaluation to compare")
@pytest.mark.parametrize(
    ("source", "scope"),
    [
        pytest.param("{{ p.userId }}", {"p": {"userId": "u1"}}, id="attribute"),
        pytest.param("{{ p['userId'] }}", {"p": {"userId": "u1"}}, id="subscript"),
        pytest.param(
            "{{ p.messageId or run.id }}", {"p": Values(), "run": {"id": "r"}}, id="or-with-values"
        ),
        pytest.param("{{ p.a and p.b }}", {"p": {"a": 1, "b": 0}}, id="and"),
        pytest.param("{{ not p.a }}", {"p": {"a": ""}}, id="not"),
        pytest.param("{{ p.a if p.b else 'no' }}", {"p": {"a": 1, "b": None}}, id="condexpr"),
        pytest.param("{{ p.a == 1 }}", {"p": {"a": True}}, id="eq-bool-int"),
        pytest.param("{{ 'x' in p.tags }}", {"p": {"tags": ["x"]}}, id="in"),
        pytest.param("{{ p.a ~ '-' ~ p.b }}", {"p": {"a": 1.0, "b": None}}, id="concat"),
        pytest.param("{{ [p.a, {'k': p.b}] }}", {"p": {"a": 1, "b": [2]}}, id="literals"),
        pytest.param(
            "{{ p.t | merge({'n': p.n}) | compact }}",
            {"p": {"t": {"a": "", "b": 1}, "n": "x"}},
            id="merge-compact",
        ),
        pytest.param(
            "{{ [p.f, p.l] | select | join(' ') }}", {"p": {"f": "Ada", "l": ""}}, id="select-join"
        ),
        pytest.param("{{ p.s | lower }}", {"p": {"s": None}}, id="lower-none"),
        pytest.param("{{ p.s | upper | trim }}", {"p": {"s": " ab "}}, id="upper-trim"),
        pytest.param("{{ p.s | string }}", {"p": {"s": 1.5}}, id="string"),
        pytest.param("{{ p.s | length }}", {"p": {"s": {"a": 1}}}, id="length"),
        pytest.param("{{ p.s is mapping }}", {"p": {"s": Values()}}, id="is-mapping"),
        pytest.param("{{ p.s is none }}", {"p": {"s": None}}, id="is-none"),
        pytest.param("{{ p.s is string }}", {"p": {"s": 1}}, id="is-string"),
        pytest.param("{{ p.s is sequence }}", {"p": {"s": (1,)}}, id="is-sequence"),
        pytest.param("{{ p.s is number }}", {"p": {"s": 1.5}}, id="is-number-float"),
        pytest.param("{{ p.items }}", {"p": {"items": [1]}}, id="key-named-like-dict-method"),
        pytest.param("{{ p.s | tojson }}", {"p": {"s": {"a": [1, None]}}}, id="tojson"),
        pytest.param("{{ p.s | select }}", {"p": {"s": [1, 0, 2]}}, id="select-is-a-list"),
    ],
)
def test_fast_path_matches_jinja(source: str, scope: dict[str, Any]) -> None:
    template = CompiledTemplate(source)
    assert template.render(scope) == template.render_jinja(scope)


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        pytest.param("{{ x | trim('-') }}", {"x": "-a-"}, "a", id="trim-with-characters"),
        pytest.param("{{ x | trim }}", {"x": " a "}, "a", id="trim"),
        pytest.param("{{ x is sequence }}", {"x": b"ab"}, True, id="bytes-are-a-sequence"),
        pytest.param("{{ x is sequence }}", {"x": range(3)}, True, id="ranges-are-a-sequence"),
        pytest.param("{{ x is sequence }}", {"x": 3}, False, id="numbers-are-not"),
        pytest.param("{{ x | join('-') }}", {"x": ["a", "b"]}, "a-b", id="join-with-separator"),
        pytest.param("{{ x | default('d') }}", {"x": None}, None, id="default-keeps-none"),
        pytest.param("{{ x | sort(reverse=true) }}", {"x": [1, 3, 2]}, [3, 2, 1], id="kwargs"),
        pytest.param(
            "{{ x | select('odd') | list }}", {"x": [1, 2, 3]}, [1, 3], id="select-a-test"
        ),
        pytest.param("{{ x | map('upper') | list }}", {"x": ["a"]}, ["A"], id="map-a-filter"),
        pytest.param("{{ x | reverse }}", {"x": [1, 2]}, [2, 1], id="reverse-an-iterator"),
        pytest.param("{{ x is divisibleby(3) }}", {"x": 9}, True, id="test-with-argument"),
        pytest.param("{{ 1e400 }}", {}, float("inf"), id="infinite-constant"),
        pytest.param("{{ x[0] }}", {"x": ["a"]}, "a", id="index"),
        pytest.param("{{ 1 < x < 3 }}", {"x": 2}, True, id="chained-comparison"),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_fast_path_calls_the_sandbox_filters_and_tests(
    path: str, source: str, scope: dict[str, Any], expected: Any
) -> None:
    """Issue 11: the fast path once re-implemented trim with one argument (a TypeError
    for ``trim('-')``) and ``sequence`` without bytes and ranges. It now calls the
    sandbox's own functions, with every argument: both paths give Jinja's answer."""
    template = CompiledTemplate(source)
    assert template._fast is not None  # the case is on the fast path, not deferred
    assert render_by(path, source, scope) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ x | trim(*y) }}",
        "{{ x | trim(**y) }}",
        "{{ x + 1 }}",
        "{{ x[y] }}",
        "{{ x[1:] }}",
        "{{ x if y }}",
        "{{ x.upper() }}",
    ],
)
def test_fast_path_refuses_what_it_does_not_model(source: str) -> None:
    assert CompiledTemplate(source)._fast is None


@pytest.mark.skipif(len(PATHS) < 2, reason="no separate full-Jinja evaluation to compare")
def test_fast_path_number_test_matches_jinja_for_booleans() -> None:
    template = CompiledTemplate("{{ p.s is number }}")
    scope = {"p": {"s": True}}
    assert template.render(scope) == template.render_jinja(scope)


# -- TemplateTree ---------------------------------------------------------------------------


def test_tree_renders_nested_dicts_and_lists() -> None:
    tree = TemplateTree(
        {
            "type": "identify",
            "traits": {
                "email": "{{ parameters.traits.email }}",
                "age": "{{ parameters.traits.age }}",
            },
            "tags": ["{{ parameters.tags[0] }}", "fixed", 7],
            "label": "{{ webhook.name }} ({{ parameters.count }})",
            "n": 1.5,
            "flag": False,
        }
    )
    assert tree.literal is False
    assert tree.render(SCOPE) == {
        "type": "identify",
        "traits": {"email": "ada@example.com", "age": 36},
        "tags": ["a", "fixed", 7],
        "label": "Ada (3)",
        "n": 1.5,
        "flag": False,
    }


def test_tree_drops_none_keys_and_emptied_objects_but_keeps_original_empty() -> None:
    tree = TemplateTree(
        {
            "kept": "{{ parameters.count }}",
            "dropped": "{{ parameters.nothing }}",
            "emptied": {"a": "{{ parameters.nothing }}", "b": "{{ none }}"},
            "deep": {"inner": {"x": "{{ parameters.nothing }}"}},
            "original_empty": {},
            "original_empty_list": [],
            "list": ["{{ parameters.nothing }}", 1, {"y": "{{ parameters.nothing }}"}],
            "literal_null": None,
            "false_is_kept": "{{ webhook.ok }}",
            "zero_is_kept": "{{ parameters.count - 3 }}",
            "empty_text_is_kept": "{{ '' }}",
        }
    )
    assert tree.render(SCOPE) == {
        "kept": 3,
        "original_empty": {},
        "original_empty_list": [],
        "list": [1],
        "literal_null": None,
        "false_is_kept": False,
        "zero_is_kept": 0,
        "empty_text_is_kept": "",
    }


def test_tree_whose_root_renders_to_none_is_none() -> None:
    assert TemplateTree("{{ parameters.nothing }}").render(SCOPE) is None
    assert TemplateTree({"a": "{{ parameters.nothing }}"}).render(SCOPE) is None


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        pytest.param({"a": "b", "c": [1, {"d": None}]}, True, id="plain-object"),
        pytest.param("text", True, id="plain-string"),
        pytest.param(42, True, id="number"),
        pytest.param(None, True, id="null"),
        pytest.param({}, True, id="empty-object"),
        pytest.param({"a": ["x", "{{ y }}"]}, False, id="template-in-list"),
        pytest.param("{% if a %}b{% endif %}", False, id="statement"),
    ],
)
def test_tree_literal_flag(value: Any, literal: bool) -> None:
    assert compile_tree(value).literal is literal


def test_literal_tree_renders_an_equal_value_not_the_input() -> None:
    source = {"a": {"b": [1, 2]}, "c": "d"}
    rendered = TemplateTree(source).render({})
    assert rendered == source
    assert rendered is not source
    assert rendered["a"] is not source["a"]


def test_tree_lists_its_templates_with_paths() -> None:
    tree = TemplateTree({"a": "{{ x }}", "b": ["lit", "{{ y }}"], "c": {"d": "{{ z }}"}})
    assert [(path, t.source) for path, t in tree.templates()] == [
        (".a", "{{ x }}"),
        (".b[1]", "{{ y }}"),
        (".c.d", "{{ z }}"),
    ]


# -- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        pytest.param("{{ 'user:' | base64 }}", {}, "dXNlcjo=", id="base64"),
        pytest.param("{{ n | base64 }}", {"n": 12}, "MTI=", id="base64-of-number"),
        pytest.param(
            "{{ a | merge(b) }}",
            {"a": {"x": 1, "y": 1}, "b": {"y": 2}},
            {"x": 1, "y": 2},
            id="merge-right-wins",
        ),
        pytest.param(
            "{{ a | merge(none, b) }}",
            {"a": {"x": 1}, "b": {"z": 3}},
            {"x": 1, "z": 3},
            id="merge-skips-none-argument",
        ),
        pytest.param("{{ none | merge(b) }}", {"b": {"z": 3}}, {"z": 3}, id="merge-none-input"),
        pytest.param(
            "{{ v | compact }}",
            {
                "v": {
                    "a": None,
                    "b": "",
                    "c": {},
                    "d": [],
                    "e": 0,
                    "f": False,
                    "g": {"h": None, "i": {"j": ""}},
                    "k": [None, "", {}, 1, {"l": None, "m": 2}],
                }
            },
            {"e": 0, "f": False, "k": [1, {"m": 2}]},
            id="compact-recursive",
        ),
        pytest.param("{{ v | compact }}", {"v": [None, "", [], {}]}, [], id="compact-list"),
        pytest.param("{{ v | compact }}", {"v": "text"}, "text", id="compact-scalar"),
        pytest.param(
            "{{ v | tojson }}",
            {"v": {"a": "é", "b": [1, 2], "c": None}},
            '{"a":"é","b":[1,2],"c":null}',
            id="tojson-compact-unicode",
        ),
        pytest.param(
            "{{ v | fromjson }}",
            {"v": '{"a": [1, true, null]}'},
            {"a": [1, True, None]},
            id="fromjson",
        ),
        pytest.param(
            "{{ 'abc' | sha256 }}",
            {},
            hashlib.sha256(b"abc").hexdigest(),
            id="sha256",
        ),
        pytest.param(
            "{{ 1764063675 | iso8601 }}",
            {},
            "2025-11-25T09:41:15.000Z",
            id="iso8601-epoch-s",
        ),
        pytest.param(
            "{{ 1764063675123 | iso8601 }}",
            {},
            "2025-11-25T09:41:15.123Z",
            id="iso8601-epoch-ms",
        ),
        pytest.param(
            "{{ '2026-01-02T03:04:05+02:00' | iso8601 }}",
            {},
            "2026-01-02T01:04:05.000Z",
            id="iso8601-offset",
        ),
        pytest.param("{{ [3, 1] | sort | first }}", {}, 1, id="builtin-sort-first"),
        pytest.param("{{ ['a', 'b'] | join('-') | upper }}", {}, "A-B", id="builtin-join-upper"),
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_filters(path: str, source: str, scope: dict[str, Any], expected: Any) -> None:
    assert render_by(path, source, scope) == expected


def test_base64_filter_accepts_bytes() -> None:
    assert environment().filters["base64"](b"\x00\xff") == "AP8="


@pytest.mark.parametrize(
    ("source", "scope", "error", "message"),
    [
        pytest.param(
            "{{ a | merge(1) }}",
            {"a": {}},
            TypeError,
            "merge expects objects, got int",
            id="merge-non-mapping",
        ),
        pytest.param(
            "{{ a | merge(b) }}",
            {"a": {}, "b": [1]},
            TypeError,
            "merge expects objects, got list",
            id="merge-list",
        ),
        pytest.param(
            "{{ 'nope' | fromjson }}", {}, ValueError, "Expecting value", id="fromjson-invalid"
        ),
        pytest.param(
            "{{ 'soon' | iso8601 }}", {}, ValueError, "Invalid isoformat", id="iso8601-invalid"
        ),
    ],
)
def test_filter_errors(
    source: str, scope: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        CompiledTemplate(source).render(scope)


def test_now_global_is_iso_utc_with_milliseconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", render("{{ now() }}"))


# -- compile-time errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        pytest.param(
            "{{ x | shout }}",
            TemplateAssertionError,
            "No filter named 'shout'",
            id="unknown-filter",
        ),
        pytest.param(
            "{{ x | attr('y') }}",
            TemplateAssertionError,
            "No filter named 'attr'",
            id="removed-attr",
        ),
        pytest.param(
            "{{ x | xmlattr }}",
            TemplateAssertionError,
            "No filter named 'xmlattr'",
            id="removed-xmlattr",
        ),
        pytest.param(
            "{{ x | indent(10) }}",
            TemplateAssertionError,
            "No filter named 'indent'",
            id="removed-indent",
        ),
        pytest.param(
            "{{ x | format(1) }}",
            TemplateAssertionError,
            "No filter named 'format'",
            id="removed-format",
        ),
        pytest.param(
            "{{ x | wordwrap(5) }}",
            TemplateAssertionError,
            "No filter named 'wordwrap'",
            id="removed-wordwrap",
        ),
        pytest.param(
            "{{ x ", TemplateSyntaxError, "unexpected end of template", id="unclosed-expression"
        ),
        pytest.param(
            "{% if x %}a", TemplateSyntaxError, "Unexpected end of template", id="unclosed-block"
        ),
        pytest.param(
            "{{ x y }}",
            TemplateSyntaxError,
            "expected token 'end of print statement'",
            id="two-names",
        ),
        pytest.param(
            "{% frobnicate %}", TemplateSyntaxError, "Encountered unknown tag", id="unknown-tag"
        ),
    ],
)
def test_compile_time_errors(source: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        CompiledTemplate(source)


def test_compile_error_in_a_tree_is_raised_at_construction() -> None:
    with pytest.raises(TemplateAssertionError):
        TemplateTree({"ok": "{{ x }}", "bad": ["{{ x | attr('y') }}"]})


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ lipsum() }}", id="lipsum"),
        pytest.param("{{ cycler(1, 2) }}", id="cycler"),
        pytest.param("{{ namespace() }}", id="namespace"),
        pytest.param("{{ joiner() }}", id="joiner"),
    ],
)
def test_jinja_globals_are_removed(source: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        render(source)


# -- sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scope"),
    [
        pytest.param("{{ ''.__class__ }}", {}, id="str-class"),
        pytest.param("x{{ ''.__class__ }}", {}, id="str-class-in-text"),
        pytest.param("{{ x.__class__.__mro__ }}", {"x": 1}, id="mro"),
        pytest.param("{{ x.__init__.__globals__ }}", {"x": object()}, id="globals"),
        pytest.param("{{ d.update({'a': 1}) }}", {"d": {}}, id="dict-update"),
        pytest.param("{{ xs.append(1) }}", {"xs": []}, id="list-append"),
        pytest.param("{{ d.pop('a') }}", {"d": {"a": 1}}, id="dict-pop"),
        pytest.param("{{ d.setdefault('a', 1) }}", {"d": {}}, id="dict-setdefault"),
    ],
)
def test_sandbox_refuses_unsafe_access(source: str, scope: dict[str, Any]) -> None:
    with pytest.raises(SecurityError):
        CompiledTemplate(source).render(scope)


def test_sandbox_leaves_the_scope_untouched() -> None:
    scope = {"d": {"a": 1}}
    with pytest.raises(SecurityError):
        CompiledTemplate("{{ d.clear() }}").render(scope)
    assert scope == {"d": {"a": 1}}


def test_sameas_test_is_removed() -> None:
    with pytest.raises(TemplateAssertionError, match="sameas"):
        CompiledTemplate("{{ x is sameas y }}")


# -- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ 'a' * 10**9 }}", id="string-times-huge"),
        pytest.param("{{ 10**9 * 'a' }}", id="huge-times-string"),
        pytest.param("{{ [1] * 10**8 }}", id="list-times-huge"),
        pytest.param("{{ (1, 2) * 10**6 }}", id="tuple-times-huge"),
        pytest.param("x{{ 'ab' * 500001 }}", id="just-over-limit-in-text"),
        pytest.param("{{ 2 ** 1000 }}", id="power-huge-exponent"),
        pytest.param("{{ 2 ** -101 }}", id="power-huge-negative-exponent"),
        pytest.param("{% for i in range(10**7) %}{% endfor %}", id="huge-range"),
        pytest.param("{{ range(10001) | list }}", id="range-just-over"),
        pytest.param(
            "{% for i in range(10000) %}{{ 'a' * 101 }}{% endfor %}",
            id="rendered-text-too-big",
        ),
    ],
)
def test_bounded_operations_raise_overflow(source: str) -> None:
    with pytest.raises(OverflowError):
        render(source)


@pytest.mark.parametrize(
    ("source", "size"),
    [
        pytest.param("{{ ('a' * 1000000) | length }}", MAX_OUTPUT, id="string-at-limit"),
        pytest.param("{{ ([0] * 1000000) | length }}", MAX_OUTPUT, id="list-at-limit"),
        pytest.param("{{ range(10000) | list | length }}", 10_000, id="range-at-limit"),
        pytest.param("{{ 2 ** 100 }}", 2**100, id="exponent-at-limit"),
    ],
)
def test_bounded_operations_allow_the_limit(source: str, size: int) -> None:
    assert render(source) == size


def test_small_arithmetic_is_unaffected() -> None:
    assert render("{{ 2 ** 10 * 3 }}") == 3072
    assert render("{{ 2.5 * 2 }}") == 5.0


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ ('a' * 1000000) ~ ('a' * 1000000) }}", id="tilde-concat"),
        pytest.param("{{ ('a' * 1000000) + ('a' * 1000000) }}", id="plus-concat"),
        pytest.param("{{ ('a' * 1000) | replace('a', 'a' * 1001) }}", id="replace"),
        pytest.param("{{ '%2000000s' % 'a' }}", id="percent-format-width"),
    ],
)
def test_single_expression_output_is_capped(source: str) -> None:
    with pytest.raises(OverflowError):
        render(source)


def test_nested_powers_are_bounded() -> None:
    with pytest.raises(OverflowError):
        render("{{ ((10**100)**100)**100 }}")


def test_output_cap_stops_rendering_early() -> None:
    consumed = 0

    def items() -> Iterator[int]:
        nonlocal consumed
        for i in range(5000):
            consumed += 1
            yield i

    with pytest.raises(OverflowError):
        CompiledTemplate("{% for i in items %}{{ 'a' * 1000 }}{% endfor %}").render(
            {"items": items()}
        )
    # 1,001 iterations of 1,000 characters exceed the cap; a bounded render stops there.
    assert consumed <= 1100


# -- referenced_names ------------------------------------------------------------------------


def test_referenced_names_returns_attribute_chains() -> None:
    chains = referenced_names(
        CompiledTemplate("{{ parameters.traits.email }} {{ connection['region'] }}")
    )
    assert ("parameters", "traits", "email") in chains
    assert ("connection", "region") in chains
    assert all(chain[0] in ("parameters", "connection") for chain in chains)


@pytest.mark.parametrize(
    ("source", "present", "absent_roots"),
    [
        pytest.param(
            "{% for item in parameters.lines %}{{ item.sku }}{{ loop.index }}{% endfor %}",
            [("parameters", "lines"), ("loop", "index")],
            {"item"},
            id="for-loop-variable",
        ),
        pytest.param(
            "{% for k, v in parameters.kv | dictsort %}{{ k }}={{ v.x }}{% endfor %}",
            [("parameters", "kv")],
            {"k", "v"},
            id="tuple-unpacking",
        ),
        pytest.param(
            "{% set total = parameters.count %}{{ total.real }}",
            [("parameters", "count")],
            {"total"},
            id="set-variable",
        ),
        pytest.param(
            "{% macro m(arg) %}{{ arg.x }}{% endmacro %}{{ m(run.id) }}",
            [("run", "id")],
            {"arg"},
            id="macro-parameter",
        ),
        pytest.param(
            "{{ a['b'].c }}",
            [("a", "b", "c")],
            set(),
            id="const-subscript",
        ),
    ],
)
def test_referenced_names_skips_bound_names(
    source: str, present: list[tuple[str, ...]], absent_roots: set[str]
) -> None:
    chains = referenced_names(CompiledTemplate(source))
    for chain in present:
        assert chain in chains
    assert not {chain[0] for chain in chains} & absent_roots


def test_referenced_names_stops_at_dynamic_subscripts() -> None:
    chains = referenced_names(CompiledTemplate("{{ a[key].c }}"))
    assert ("a",) in chains
    assert ("key",) in chains
    assert not any(len(chain) > 1 and chain[0] == "a" for chain in chains)


def test_referenced_names_of_a_literal_is_empty() -> None:
    assert referenced_names(CompiledTemplate("no names here")) == []


@pytest.mark.parametrize(
    "source",
    [
        "{{ ['a' * 1000000] * 300 }}",
        "{{ 'a'.ljust(300000000) }}",
        "{{ 'a'.zfill(300000000) }}",
        "{{ 'a'.center(300000000) }}",
        "{{ ('\t' * 1000).expandtabs(300000) }}",
        "{{ '{:>300000000}'.format('a') }}",
        "{{ '{x}'.format_map({'x': 1}) }}",
        "{{ range(10000) | join('a' * 1000000) }}",
        "{{ 'a'.join(['b' * 1000000] * 2) }}",
        "{{ 'ab'.replace('a', 'a' * 1000000) }}",
        "{{ [[1] * 1000] * 1000 | sum(start=[]) }}",
    ],
)
def test_text_growing_calls_are_bounded_before_they_allocate(source: str) -> None:
    from connector.templating.templates import CompiledTemplate

    with pytest.raises((OverflowError, TypeError)):
        CompiledTemplate(source).render({})


def test_fast_path_leaves_private_names_to_the_sandbox() -> None:
    from jinja2.exceptions import SecurityError

    from connector.core.values import Values
    from connector.templating.templates import CompiledTemplate

    with pytest.raises(SecurityError):
        CompiledTemplate("{{ a.__missing__ }}").render({"a": Values()})


@pytest.mark.parametrize("key", ["q{{a}}", "filter{id}", "k{}", "}{", "{0}", "a'b\"c\\d"])
def test_tree_keys_with_braces_and_quotes_are_kept_as_they_are(key: str) -> None:
    """Keys go into the generated function as literals: braces and quotes in them are
    neither format fields nor code."""
    tree = TemplateTree({key: "{{ parameters.traits.email }}", "n": {key: 1, "x": "{{ 1 }}"}})
    expected = {key: "ada@example.com", "n": {key: 1, "x": 1}}
    assert tree.render(SCOPE) == expected
    assert tree.render_by_node(SCOPE) == expected


# -- one budget of loop iterations and calls per render ----------------------------------

DEEP = "{% for i in range(10000) %}{% for j in range(10000) %}{% for k in range(10000) %}"


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(DEEP + "{% endfor %}{% endfor %}{% endfor %}x", id="three-nested-ranges"),
        pytest.param(
            "{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}",
            id="two-nested-just-over",
        ),
        pytest.param(
            "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}"
            "{{ m(40) }}",
            id="macro-calling-itself-twice",
        ),
        pytest.param(
            "{% for x in items %}{% for y in items %}{% for z in items %}{% endfor %}"
            "{% endfor %}{% endfor %}",
            id="nested-loops-over-data",
        ),
    ],
)
def test_loops_and_calls_share_one_budget_per_render(source: str) -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(OverflowError, match="100,000 loop iterations and calls"):
        compile_template(source).render({"items": list(range(100))})
    assert time.perf_counter() - start < 5  # stopped early: unbounded, these run for hours


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "{% for i in range(300) %}{% for j in range(300) %}.{% endfor %}{% endfor %}",
            "." * 90_000,
            id="nested-within-budget",
        ),
        pytest.param(
            "{% for a, b in pairs %}{{ a }}={{ b }};{% else %}none{% endfor %}",
            "a=1;b=2;",
            id="unpacking",
        ),
        pytest.param("{% for x in [] %}x{% else %}none{% endfor %}", "none", id="else"),
        pytest.param(
            "{% for x in items if x %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}",
            "1/2:1 2/2:3 ",
            id="filter-and-loop-length",
        ),
        pytest.param(
            "{% macro m(n) %}{% if n %}{{ n }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(3) }}",
            "321",
            id="macro-recursing-once",
        ),
    ],
)
def test_loops_within_the_budget_render_as_jinja_does(source: str, expected: str) -> None:
    scope = {"pairs": [["a", 1], ["b", 2]], "items": [1, 0, 3]}
    assert compile_template(source).render(scope) == expected
    plain = jinja2.Environment(undefined=jinja2.StrictUndefined)
    assert plain.from_string(source).render(**scope) == expected


def test_every_render_gets_a_fresh_budget() -> None:
    template = compile_template(
        "{% for i in range(300) %}{% for j in range(300) %}{% endfor %}{% endfor %}ok"
    )
    assert [template.render({}) for _ in range(3)] == ["ok"] * 3


def test_recursive_loops_are_refused_when_compiled() -> None:
    with pytest.raises(TemplateAssertionError, match="recursive loops are not allowed"):
        compile_template("{% for x in tree recursive %}{{ loop(x.children) }}{% endfor %}")


# -- what a render may build and walk, however it is built (review of the loop budget) ----


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(
            "{{ ([[0] * 1000000] * 1000000) | map('list') | list | length }}",
            id="shared-inner-list-copied",
        ),
        pytest.param("{{ [[0] * 1000000] * 1000000 == [[0] * 1000000] * 1000000 }}", id="eq"),
        pytest.param("{{ ([[0] * 1000000] * 100) | string | length }}", id="string-of-nested"),
        pytest.param("{{ ([range(10000)] * 1000000) | map('sum') | sum }}", id="ranges"),
        pytest.param(
            "{% set a = 'x' * 1000000 %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a | length }}",
            id="concat-doubling",
        ),
        pytest.param("{{ ('x' * 600000) ~ ('y' * 600000) }}", id="concat-in-expression"),
        pytest.param(
            "{% set a = [0] * 1000000 %}{% set b = [a, a] %}{% set c = [b, b] %}"
            "{{ c | string | length }}",
            id="list-literal-doubling",
        ),
        pytest.param(
            "{% set a = [0] * 600000 %}{{ {'x': a, 'y': a} | string | length }}",
            id="dict-literal",
        ),
        pytest.param(
            "{% set s = 'x' * 1000000 %}{% for i in range(10000) %}{% for j in range(9) %}"
            "{{ '' if s | upper else '' }}{% endfor %}{% endfor %}",
            id="heavy-steps-within-the-iteration-budget",
        ),
    ],
)
def test_amplified_work_is_refused_quickly(source: str) -> None:
    import time

    start = time.process_time()
    with pytest.raises(OverflowError):
        compile_template(source).render({})
    assert time.process_time() - start < 5  # unbounded: minutes, or terabytes


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }}{% endfor %}", "1234", id="unpack"
        ),
        pytest.param("{% set x, y = 5, 6 %}{{ x ~ y }}", "56", id="set-tuple"),
        pytest.param("{{ {'a': [1, {'b': (2,)}]} }}", "{'a': [1, {'b': (2,)}]}", id="literals"),
        pytest.param("{{ 'a' ~ 1 ~ none }}", "a1None", id="concat"),
        pytest.param("{{ ([[0] * 1000] * 990) | length }}", "990", id="nested-at-the-limit"),
    ],
)
def test_guarded_templates_render_as_jinja_does(source: str, expected: str) -> None:
    assert str(compile_template("x" + source).render({}))[1:] == expected
    plain = jinja2.Environment(undefined=jinja2.StrictUndefined)
    assert plain.from_string(source).render() == expected


@pytest.mark.parametrize("source", ["{# note #}{{ x }}", "{{ x }}{# note #}", " {{ x }} "])
def test_tree_fast_path_and_jinja_agree_on_what_is_a_single_expression(source: str) -> None:
    """A comment or text around ``{{ x }}`` makes a text template on both paths (the
    generated tree function once kept the list's native type there)."""
    tree = TemplateTree({"a": source})
    assert tree.render({"x": [1]}) == tree.render_by_node({"x": [1]})
    assert isinstance(tree.render({"x": [1]})["a"], str)
