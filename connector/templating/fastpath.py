"""The fast path: Jinja's AST, in a safe subset, compiled to plain Python functions.

Most templates in manifests and mappings are simple: ``parameters.userId``,
``parameters.messageId or run.id``, ``parameters.traits | merge(x) | compact``. Jinja
evaluates each by building a fresh render context (~15 µs a template), and a request
body is a tree of a dozen of them. This module writes the Python source of one function
per single-expression template, and of one function per whole tree of them (a request
body), compiled the first time it runs.

The subset is safe by construction: values are read only through dict keys (``x[k]``
after checking ``x`` is a dict), the only calls are the engine's own pure filters and
tests, passed in by name, and no name of a template ever becomes a Python identifier
unchecked (keys and constants are ``repr``'d literals). Whenever the generated code
meets anything outside the subset at run time (a missing key, a non-dict, a name the
scope lacks), it raises :class:`Fallback` and the caller evaluates with the full
sandboxed Jinja, so results and errors are always Jinja's; the tests compare the two.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import nodes

from connector.templating.sandbox import bounded_concat

__all__ = ["Fallback", "FastFunction", "expression_function", "tree_function"]

Scope = Mapping[str, Any]


class Fallback(Exception):
    """This expression (or this evaluation of it) needs the full Jinja sandbox."""


class _Unsupported(Exception):
    """A part the generator does not handle: keep the ordinary path."""


_DICT_ATTRIBUTES = frozenset(dir(dict))
_LITERALS = (str, int, float, bool, type(None))
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
#: The output-size check on a text result, as generated code.
_CAP = (
    "type({value}) is str and len({value}) > _MAX: "
    "raise OverflowError('result exceeds the output limit')"
)


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


class FastFunction:
    """Generated source, compiled into a function the first time it is called."""

    __slots__ = ("_env", "_function", "_source")

    def __init__(self, source: str, env: dict[str, Any]) -> None:
        self._source = source
        self._env = env
        self._function: Callable[[Scope], Any] | None = None

    def __call__(self, scope: Scope) -> Any:
        return self.compiled()(scope)

    def compiled(self) -> Callable[[Scope], Any]:
        """The plain function (compiled now if need be): callers on a hot path keep it
        and call it directly, saving this object's call layer."""
        function = self._function
        if function is None:
            namespace = dict(self._env)
            exec(compile(self._source, "<connector fast path>", "exec"), namespace)
            function = self._function = namespace["render"]
        return function


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
        # The engine's Values (checked parameters, the usual case) read an absent field
        # as None through their __missing__: tested first, then any dict.
        return (
            f"({t}.get({key!r}) if type({t} := {target}) is _Values else {t}[{key!r}] "
            f"if isinstance({t}, _dict) and {key!r} in {t} else _missing({t}, {key!r}))"
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
        if len(node.ops) != 1 or node.ops[0].op not in _OPERATORS:
            raise _Unsupported("compare")
        op = _OPERATORS[node.ops[0].op]
        return f"({self.expr(node.expr)} {op} {self.expr(node.ops[0].expr)})"

    def _Concat(self, node: nodes.Concat) -> str:
        return f"{self.bind(bounded_concat)}(" + ", ".join(self.expr(n) for n in node.nodes) + ")"

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
        from connector.templating.templates import CompiledTemplate

        if type(node) is CompiledTemplate:
            self.emit(f"{target} = {self.template(node)}", depth)
            self.emit(f"if {target} is None: {target} = _DROP", depth)
            self.emit(f"elif {_CAP.format(value=target)}", depth)
        elif type(node) is dict or type(node) is list:
            out = self.temp()
            self.emit(f"{out} = {{}}" if type(node) is dict else f"{out} = []", depth)
            is_dict = type(node) is dict
            items: Any = node.items() if isinstance(node, dict) else ((None, c) for c in node)
            for key, child in items:
                # A key may hold braces: it goes into the line as a repr, never through
                # str.format.
                def add(value: str, key: Any = key) -> str:
                    return f"{out}[{key!r}] = {value}" if is_dict else f"{out}.append({value})"

                if isinstance(child, _LITERALS) and child is not None:
                    self.emit(add(repr(child)), depth)
                    continue
                value = self.temp()
                if type(child) is CompiledTemplate:
                    # A template is dropped when None (it never yields _DROP itself).
                    self.emit(f"{value} = {self.template(child)}", depth)
                    self.emit(f"if {value} is not None:", depth)
                    self.emit(f"if {_CAP.format(value=value)}", depth + 1)
                else:
                    self.node(child, value, depth)
                    self.emit(f"if {value} is not _DROP:", depth)
                self.emit(add(value), depth + 1)
            if type(node) is dict and node:
                self.emit(f"{target} = {out} if {out} else _DROP", depth)
            else:
                self.emit(f"{target} = {out}", depth)
        elif isinstance(node, _LITERALS):
            self.emit(f"{target} = {node!r}", depth)
        else:
            raise _Unsupported("literal")

    def template(self, node: Any) -> str:
        """The expression of a single-expression template (CompiledTemplate decides
        which those are; a text template is left to Jinja)."""
        if node.expression is None:
            raise _Unsupported("text template")
        return self.expr(node.expression)


def _finish(generator: _Generator, body: list[str]) -> FastFunction:
    from connector.core.mapping import Values

    generator.env["_Values"] = Values
    prologue = ["def render(scope):"]
    for name in sorted(generator.scope_names):
        # A name the scope lacks: Jinja decides (and reports) on the ordinary path.
        prologue.append(f"    if {name!r} not in scope: raise Fallback({name!r})")
        prologue.append(f"    {generator.local(name)} = scope[{name!r}]")
    return FastFunction("\n".join(prologue + body), generator.env)


def expression_function(
    node: nodes.Node, filters: Mapping[str, Callable[..., Any]], max_output: int
) -> FastFunction | None:
    """A function evaluating one expression, or None when it is outside the subset."""
    generator = _Generator(filters, max_output, None)
    try:
        value = generator.expr(node)
    except _Unsupported:
        return None
    body = [f"    value = {value}", f"    if {_CAP.format(value='value')}", "    return value"]
    return _finish(generator, body)


def tree_function(
    node: Any, filters: Mapping[str, Callable[..., Any]], max_output: int, drop: object
) -> FastFunction | None:
    """One function rendering a compiled template tree (see templates.TemplateTree), or
    None when a part of it is outside the subset (the tree then renders node by node)."""
    generator = _Generator(filters, max_output, drop)
    try:
        generator.node(node, "result", 1)
    except _Unsupported:
        return None
    generator.emit("return result", 1)
    return _finish(generator, generator.lines)
