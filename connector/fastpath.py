"""A fast path for the common template expressions: Jinja's AST compiled to closures.

Most templates in manifests and mappings are simple: ``parameters.userId``,
``parameters.messageId or run.id``, ``parameters.traits | merge(x) | compact``. Jinja
evaluates each one by building a fresh render context, which costs ~15 µs a template;
a batch of 100,000 messages with ten templates each would spend most of its time there.

This module compiles a *safe subset* of Jinja's expression AST into plain Python
closures, once, at load time. The subset is safe by construction: values are only
read through mapping keys (never Python attributes), and the only calls are the
engine's own pure filters and a few re-implemented built-ins. Anything outside the
subset, at compile time or at run time (a missing key, an attribute of a non-mapping,
a name that is not in scope), raises :class:`Fallback`, and the caller evaluates the
template with the full sandboxed Jinja instead, so errors and edge cases keep exactly
Jinja's behaviour. Results are the same either way; the tests run both paths.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

__all__ = ["Fallback", "compile_expression"]

Evaluator = Callable[[Mapping[str, Any]], Any]


class Fallback(Exception):
    """This expression (or this evaluation of it) needs the full Jinja sandbox."""


_DICT_ATTRIBUTES = frozenset(dir(dict))


def _select(value: Any) -> list[Any]:
    return [v for v in value if v]


#: Built-in Jinja filters re-implemented with identical results for plain data.
_BUILTIN_FILTERS: dict[str, Callable[..., Any]] = {
    "select": _select,
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "string": str,
    "length": len,
    "count": len,
    "trim": lambda v: str(v).strip(),
}

_TESTS: dict[str, Callable[[Any], bool]] = {
    "mapping": lambda v: isinstance(v, Mapping),
    "none": lambda v: v is None,
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, numbers.Number),
    "sequence": lambda v: isinstance(v, list | tuple | str | Mapping),
}

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lteq": operator.le,
    "gt": operator.gt,
    "gteq": operator.ge,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def compile_expression(node: nodes.Node, filters: Mapping[str, Callable[..., Any]]) -> Evaluator:
    """A closure evaluating ``node``; raises Fallback when the node is outside the subset."""
    return _Compiler(filters).compile(node)


class _Compiler:
    def __init__(self, filters: Mapping[str, Callable[..., Any]]) -> None:
        self.filters = filters

    def compile(self, node: nodes.Node) -> Evaluator:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise Fallback(type(node).__name__)
        result: Evaluator = method(node)
        return result

    def _Name(self, node: nodes.Name) -> Evaluator:
        name = node.name
        if name in ("true", "True"):
            return lambda scope: True
        if name in ("false", "False"):
            return lambda scope: False
        if name in ("none", "None"):
            return lambda scope: None

        def get(scope: Mapping[str, Any]) -> Any:
            try:
                return scope[name]
            except KeyError:
                raise Fallback(name) from None

        return get

    def _lookup(self, target: Evaluator, key: Any) -> Evaluator:
        if isinstance(key, str) and key.startswith("_"):
            raise Fallback(key)  # private names: the sandbox decides, never the fast path
        unsafe_key = isinstance(key, str) and key in _DICT_ATTRIBUTES

        def get(scope: Mapping[str, Any]) -> Any:
            value = target(scope)
            # Plain dicts only (JSON data and the engine's Values); anything else, and
            # a missing key, is left to Jinja so its semantics and errors apply.
            if isinstance(value, dict):
                if key in value:
                    return value[key]
                if not unsafe_key and hasattr(type(value), "__missing__"):
                    return value[key]
            raise Fallback(key)

        return get

    def _Getattr(self, node: nodes.Getattr) -> Evaluator:
        return self._lookup(self.compile(node.node), node.attr)

    def _Getitem(self, node: nodes.Getitem) -> Evaluator:
        if not isinstance(node.arg, nodes.Const) or not isinstance(node.arg.value, str):
            raise Fallback("dynamic subscript")
        return self._lookup(self.compile(node.node), node.arg.value)

    def _Const(self, node: nodes.Const) -> Evaluator:
        value = node.value
        return lambda scope: value

    def _List(self, node: nodes.List) -> Evaluator:
        items = [self.compile(item) for item in node.items]
        return lambda scope: [item(scope) for item in items]

    def _Tuple(self, node: nodes.Tuple) -> Evaluator:
        items = [self.compile(item) for item in node.items]
        return lambda scope: tuple(item(scope) for item in items)

    def _Dict(self, node: nodes.Dict) -> Evaluator:
        pairs = [(self.compile(p.key), self.compile(p.value)) for p in node.items]
        return lambda scope: {k(scope): v(scope) for k, v in pairs}

    def _Or(self, node: nodes.Or) -> Evaluator:
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda scope: left(scope) or right(scope)

    def _And(self, node: nodes.And) -> Evaluator:
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda scope: left(scope) and right(scope)

    def _Not(self, node: nodes.Not) -> Evaluator:
        inner = self.compile(node.node)
        return lambda scope: not inner(scope)

    def _CondExpr(self, node: nodes.CondExpr) -> Evaluator:
        if node.expr2 is None:
            raise Fallback("if without else")
        test = self.compile(node.test)
        yes, no = self.compile(node.expr1), self.compile(node.expr2)
        return lambda scope: yes(scope) if test(scope) else no(scope)

    def _Compare(self, node: nodes.Compare) -> Evaluator:
        if len(node.ops) != 1 or node.ops[0].op not in _COMPARE:
            raise Fallback("compare")
        op = _COMPARE[node.ops[0].op]
        left, right = self.compile(node.expr), self.compile(node.ops[0].expr)
        return lambda scope: op(left(scope), right(scope))

    def _Concat(self, node: nodes.Concat) -> Evaluator:
        parts = [self.compile(n) for n in node.nodes]
        return lambda scope: "".join(str(p(scope)) for p in parts)

    def _Test(self, node: nodes.Test) -> Evaluator:
        if node.name not in _TESTS or node.args or node.kwargs or node.dyn_args:
            raise Fallback(f"test {node.name}")
        test, inner = _TESTS[node.name], self.compile(node.node)
        return lambda scope: test(inner(scope))

    def _Filter(self, node: nodes.Filter) -> Evaluator:
        if node.kwargs or node.dyn_args or node.dyn_kwargs or node.node is None:
            raise Fallback("filter arguments")
        func = self.filters.get(node.name) or _BUILTIN_FILTERS.get(node.name)
        if func is None:
            raise Fallback(f"filter {node.name}")
        if node.name == "select" and node.args:
            raise Fallback("select with a test")
        inner = self.compile(node.node)
        args = [self.compile(a) for a in node.args]
        if not args:
            return lambda scope: func(inner(scope))
        return lambda scope: func(inner(scope), *(a(scope) for a in args))
