"""Template trees compiled to one Python function each, for the hot path.

A request body is a tree of a dozen templates; rendering it node by node costs a
function call and a type dispatch per node and per expression step, about 8 µs for a
Segment track. This module turns a whole tree whose templates are all in the fast
path's safe subset (:mod:`connector.fastpath`) into the source of one Python function,
compiled once when the manifest loads, that builds the result directly.

The generated code is as safe as the fast path, by the same construction: values are
read only through dict keys (``x[k]`` after checking ``type(x)`` is a dict), the only
calls are the engine's own pure filters and tests, passed in by name, and no name of a
template ever becomes a Python identifier (every key and constant is a ``repr``'d
literal). Whenever the generated code meets anything outside that subset at run time
(a missing key, a non-dict), it raises :class:`~connector.fastpath.Fallback` and the
caller renders the tree the ordinary way, so results and errors are always exactly
those of the node-by-node path; the tests compare the two.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

from connector.fastpath import _BUILTIN_FILTERS, _COMPARE, _DICT_ATTRIBUTES, _TESTS, Fallback

__all__ = ["compile_tree_function"]

TreeFunction = Callable[[Mapping[str, Any]], Any]

_OPERATORS = {
    "eq": "==",
    "ne": "!=",
    "lt": "<",
    "lteq": "<=",
    "gt": ">",
    "gteq": ">=",
    "in": "in",
    "notin": "not in",
}
_LITERALS = (str, int, float, bool, type(None))


class _Unsupported(Exception):
    """This tree has a part the generator does not handle: keep the ordinary path."""


def _missing(value: Any, key: str) -> Any:
    """A key absent from a dict: ``None`` for the engine's Values, else Jinja decides."""
    if (
        isinstance(value, dict)
        and key not in _DICT_ATTRIBUTES
        and not key.startswith("_")
        and hasattr(type(value), "__missing__")
    ):
        return value[key]  # the engine's Values: an absent field reads as None
    raise Fallback(key)


class _Generator:
    """Writes the function's source; ``emit`` lines, ``expr`` expressions."""

    def __init__(
        self, filters: Mapping[str, Callable[..., Any]], max_output: int, drop: object
    ) -> None:
        self.lines: list[str] = []
        self.names = itertools.count()
        self.env: dict[str, Any] = {
            "Fallback": Fallback,
            "_missing": _missing,
            "_DROP": drop,
            "_MAX": max_output,
            "_str": str,
            "_dict": dict,
        }
        self.filters = filters
        #: Scope names the expressions read: bound once, at the top of the function.
        self.scope_names: set[str] = set()

    def temp(self) -> str:
        return f"_t{next(self.names)}"

    def bind(self, value: Any) -> str:
        name = f"_g{next(self.names)}"
        self.env[name] = value
        return name

    # -- expressions (Jinja AST -> Python source) ---------------------------------------

    def expr(self, node: nodes.Node) -> str:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise _Unsupported(type(node).__name__)
        source: str = method(node)
        return source

    def _Name(self, node: nodes.Name) -> str:
        constants = {
            "true": "True",
            "True": "True",
            "false": "False",
            "False": "False",
            "none": "None",
            "None": "None",
        }
        if node.name in constants:
            return constants[node.name]
        self.scope_names.add(node.name)
        return self.local(node.name)

    @staticmethod
    def local(name: str) -> str:
        # A template name becomes a local of the generated function only with a prefix
        # no other local uses, and only when it is a plain identifier.
        if not name.isidentifier():
            raise _Unsupported("name")
        return f"_s_{name}"

    def _lookup(self, target: str, key: Any) -> str:
        if not isinstance(key, str) or key.startswith("_"):
            raise _Unsupported("key")
        t = self.temp()
        if key in _DICT_ATTRIBUTES:
            return (
                f"({t}[{key!r}] if isinstance({t} := {target}, _dict) and {key!r} in {t} "
                f"else _missing({t}, {key!r}))"
            )
        # The engine's Values read an absent field as None (its __missing__): inline.
        return (
            f"({t}[{key!r}] if isinstance({t} := {target}, _dict) and ({key!r} in {t} "
            f"or type({t}) is _Values) else _missing({t}, {key!r}))"
        )

    def _Getattr(self, node: nodes.Getattr) -> str:
        return self._lookup(self.expr(node.node), node.attr)

    def _Getitem(self, node: nodes.Getitem) -> str:
        if not isinstance(node.arg, nodes.Const):
            raise _Unsupported("dynamic subscript")
        return self._lookup(self.expr(node.node), node.arg.value)

    def _Const(self, node: nodes.Const) -> str:
        if not isinstance(node.value, _LITERALS):
            raise _Unsupported("constant")
        return repr(node.value)

    def _List(self, node: nodes.List) -> str:
        return "[" + ", ".join(self.expr(i) for i in node.items) + "]"

    def _Tuple(self, node: nodes.Tuple) -> str:
        return "(" + "".join(self.expr(i) + ", " for i in node.items) + ")"

    def _Dict(self, node: nodes.Dict) -> str:
        return (
            "{" + ", ".join(f"{self.expr(p.key)}: {self.expr(p.value)}" for p in node.items) + "}"
        )

    def _Or(self, node: nodes.Or) -> str:
        return f"({self.expr(node.left)} or {self.expr(node.right)})"

    def _And(self, node: nodes.And) -> str:
        return f"({self.expr(node.left)} and {self.expr(node.right)})"

    def _Not(self, node: nodes.Not) -> str:
        return f"(not {self.expr(node.node)})"

    def _CondExpr(self, node: nodes.CondExpr) -> str:
        if node.expr2 is None:
            raise _Unsupported("if without else")
        return f"({self.expr(node.expr1)} if {self.expr(node.test)} else {self.expr(node.expr2)})"

    def _Compare(self, node: nodes.Compare) -> str:
        if len(node.ops) != 1 or node.ops[0].op not in _COMPARE:
            raise _Unsupported("compare")
        op = _OPERATORS[node.ops[0].op]
        return f"({self.expr(node.expr)} {op} {self.expr(node.ops[0].expr)})"

    def _Concat(self, node: nodes.Concat) -> str:
        return "''.join([" + ", ".join(f"_str({self.expr(n)})" for n in node.nodes) + "])"

    def _Test(self, node: nodes.Test) -> str:
        if node.name not in _TESTS or node.args or node.kwargs or node.dyn_args:
            raise _Unsupported("test")
        return f"{self.bind(_TESTS[node.name])}({self.expr(node.node)})"

    def _Filter(self, node: nodes.Filter) -> str:
        if node.kwargs or node.dyn_args or node.dyn_kwargs or node.node is None:
            raise _Unsupported("filter arguments")
        func = self.filters.get(node.name) or _BUILTIN_FILTERS.get(node.name)
        if func is None or (node.name == "select" and node.args):
            raise _Unsupported("filter")
        args = "".join(", " + self.expr(a) for a in node.args)
        return f"{self.bind(func)}({self.expr(node.node)}{args})"

    # -- statements (the tree) ----------------------------------------------------------

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    def node(self, node: Any, target: str, depth: int) -> None:
        """Code that sets ``target`` to the node's value, or to ``_DROP``."""
        from connector.templates import CompiledTemplate

        if type(node) is CompiledTemplate:
            ast = node.ast
            if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
                raise _Unsupported("text template")
            parts = ast.body[0].nodes
            if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData) or not node.fast:
                raise _Unsupported("not a single fast expression")
            self.emit(f"{target} = {self.expr(parts[0])}", depth)
            self.emit(f"if {target} is None: {target} = _DROP", depth)
            self.emit(
                f"elif type({target}) is str and len({target}) > _MAX: "
                "raise OverflowError('result exceeds the output limit')",
                depth,
            )
        elif type(node) is dict:
            out = self.temp()
            self.emit(f"{out} = {{}}", depth)
            for key, child in node.items():
                value = self.temp()
                self.node(child, value, depth)
                self.emit(f"if {value} is not _DROP: {out}[{key!r}] = {value}", depth)
            if node:
                self.emit(f"{target} = {out} if {out} else _DROP", depth)
            else:
                self.emit(f"{target} = {out}", depth)
        elif type(node) is list:
            out = self.temp()
            self.emit(f"{out} = []", depth)
            for child in node:
                value = self.temp()
                self.node(child, value, depth)
                self.emit(f"if {value} is not _DROP: {out}.append({value})", depth)
            self.emit(f"{target} = {out}", depth)
        elif isinstance(node, _LITERALS):
            self.emit(f"{target} = {node!r}", depth)
        else:
            raise _Unsupported("literal")


def compile_tree_function(
    node: Any,
    filters: Mapping[str, Callable[..., Any]],
    max_output: int,
    drop: object,
) -> TreeFunction | None:
    """One function rendering the compiled tree ``node``, or None when a part of it is
    outside the generator's subset (the tree then renders node by node)."""
    from connector.mapping import Values

    generator = _Generator(filters, max_output, drop)
    generator.env["_Values"] = Values
    try:
        generator.node(node, "result", 1)
    except _Unsupported:
        return None
    prologue = ["def render(scope):"]
    for name in sorted(generator.scope_names):
        # A name the scope lacks: Jinja decides (and reports) on the ordinary path.
        prologue.append(f"    if {name!r} not in scope: raise Fallback({name!r})")
        prologue.append(f"    {generator.local(name)} = scope[{name!r}]")
    generator.emit("return result", 1)
    source = "\n".join(prologue + generator.lines)
    namespace: dict[str, Any] = dict(generator.env)
    exec(compile(source, "<connector template tree>", "exec"), namespace)
    function: TreeFunction = namespace["render"]
    return function
