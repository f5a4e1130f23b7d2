"""The fast path: Jinja's AST, in a safe subset, compiled to plain Python functions.

Most templates in manifests and mappings are simple: ``parameters.userId``,
``parameters.messageId or run.id``, ``parameters.traits | merge(x) | compact``. Jinja
evaluates each by building a fresh render context (~15 µs a template), and a request
body is a tree of a dozen of them. This module writes the Python source of one function
per single-expression template, and of one function per whole tree of them (a request
body), compiled the first time it runs.

It agrees with Jinja by construction, not by imitation:

- every filter and test is the sandbox environment's own function (``env.filters[name]``,
  ``env.tests[name]``: the same bounded wrappers Jinja's generated code calls), called
  with the same arguments in the same order, and given the environment, evaluation
  context or context Jinja would give it (none of the sandbox's filters reads the
  context's variables, so one empty context stands for every render's);
- ``~``, list, tuple and dict literals and comparisons go through the same guards as
  in Jinja (templates.py puts them in), and the result through the same
  ``materialise``; an expression that calls anything runs within its own render budget,
  as Jinja's render does;
- every call shape it does not model (``*args``, ``**kwargs``, a filter or test the
  sandbox lacks, ``if`` without ``else``, arithmetic, dynamic subscripts, slices) makes
  the generator give up, and the template renders with Jinja.

The subset is safe: values are read only through dict keys (``x[k]`` after checking
``x`` is a dict) or list indices, the only calls are the sandbox's own filters, tests
and guards, bound by reference, and no name of a template ever becomes a Python
identifier unchecked (keys and constants are ``repr``'d literals or bound values).
Whenever the generated code meets anything outside the subset at run time (a missing
key, a non-dict, a name the scope lacks, an index out of range), it raises
:class:`Fallback` and the caller evaluates with the full sandboxed Jinja, so results and
errors are Jinja's; ``tests/test_fastpath_differential.py`` compares the two on
generated expressions and contexts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from time import monotonic
from typing import Any, cast

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import _PassArg

from connector.templating.budget import IDLE, MAX_RENDER_STEPS, MAX_RENDER_WORK, arm
from connector.templating.limits import MAX_OUTPUT
from connector.templating.sandbox import (
    COMPARE_GUARD,
    CONCAT_GUARD,
    SIZE_GUARD,
    UNBUDGETED_UNITS,
    bounded_concat,
    materialise,
    sized,
    sized_in,
    unguarded_in,
)

__all__ = ["Fallback", "FastFunction", "expression_function", "tree_function"]

Scope = Mapping[str, Any]


class Fallback(Exception):
    """This expression (or this evaluation of it) needs the full Jinja sandbox."""


class _Unsupported(Exception):
    """A part the generator does not handle: keep the ordinary path."""


_DICT_ATTRIBUTES = frozenset(dir(dict))
#: Deepest expression the generator writes (each level may open a few parentheses).
_MAX_DEPTH = 40
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
#: Filters whose result is *plain* when their input is (see _READ_CHECK): texts,
#: numbers, booleans or JSON values. Any other filter (one that makes an iterator, a
#: generator or tuples, one added later, an app's) sends its expression's result
#: through materialise. (first, last, min and max are not plain: of an empty sequence
#: they give an undefined value, which materialise refuses as Jinja does.)
_PLAIN_FILTERS = frozenset(
    {
        *("abs", "base64", "capitalize", "compact", "count", "d", "default", "e", "escape"),
        *("float", "fromjson", "int", "iso8601", "join", "length", "list", "lower"),
        *("merge", "replace", "round", "sha256", "sort", "string", "sum", "title"),
        *("tojson", "trim", "truncate", "upper", "urlencode"),
    }
)
#: The result check of a single expression, as Jinja's ``materialise`` does it. Scope
#: values are JSON data (bytes and ranges too, in tests), which materialise leaves as
#: they are but for the length of a text; so are the literals, texts, numbers and booleans
#: the other filters, tests and guards build from them. For such a *plain* expression
#: only the length check is written out; any other goes through materialise.
_READ_CHECK = (
    "if (type({value}) is _str or type({value}) is _bytes) and len({value}) > _MAX: "
    "raise OverflowError('result exceeds the output limit')"
)
_BUILT_CHECK = (
    "if type({value}) is _str:\n"
    "    if len({value}) > _MAX: raise OverflowError('result exceeds the output limit')\n"
    "elif {value} is not None and type({value}) not in _SCALARS: {value} = _materialise({value})"
)


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


def _index(value: Any, index: int) -> Any:
    """``value[index]`` for a list or tuple holding it; anything else is Jinja's."""
    if (type(value) is list or type(value) is tuple) and -len(value) <= index < len(value):
        return value[index]
    raise Fallback(index)


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

    def __init__(self, env: SandboxedEnvironment, drop: object) -> None:
        self.lines: list[str] = []
        self.names = itertools.count()
        self.env: dict[str, Any] = {
            "Fallback": Fallback,
            "_missing": _missing,
            "_index": _index,
            "_DROP": drop,
            "_MAX": MAX_OUTPUT,
            "_str": str,
            "_bytes": bytes,
            "_dict": dict,
            "_SCALARS": frozenset({int, float, bool}),
            "_materialise": materialise,
            "_arm": arm,
            "_IDLE": IDLE,
            "_monotonic": monotonic,
        }
        self.jinja = env
        #: One context for the filters that take one (select, map, ...): they read only
        #: its environment and evaluation context, never its variables.
        self.context = env.context_class(env, {}, None, {})
        #: Scope names the expressions read: bound once, at the top of the function.
        self.scope_names: set[str] = set()
        #: Scope names whose keys are read: each also gets its ``get`` bound once when
        #: it holds the engine's Values (see _lookup).
        self.read_names: set[str] = set()
        #: Whether the expression being written calls anything (and needs a budget).
        self.calls = False
        #: Whether it calls anything that spends from its budget besides its literals'
        #: size guard and the linear filters, and how many literals, merge operands and
        #: compact calls it has (see UNBUDGETED_UNITS).
        self.spends = False
        self.units = 0
        #: Whether its value is one materialise leaves as it is (see _READ_CHECK).
        self.plain = True
        self.depth = 0
        #: How many expressions of the function run within a budget (see _finish).
        self.budgets = 0

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
        # Python's parser refuses code nested 200 levels deep; Jinja's own code
        # generation decides what such an expression does.
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Unsupported("nesting")
        try:
            source: str = method(node)
        finally:
            self.depth -= 1
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
        read = (
            f"({t}.get({key!r}) if type({t} := {target}) is _Values else {t}[{key!r}] "
            f"if isinstance({t}, _dict) and {key!r} in {t} else _missing({t}, {key!r}))"
        )
        name = target.removeprefix("_s_")
        if target != f"_s_{name}" or name not in self.scope_names:
            return read
        # A scope name's own key (``parameters.event``): whether it holds Values was
        # tested once, at the top, where its ``get`` was bound (None if not).
        self.read_names.add(name)
        return f"(_v_{name}({key!r}) if _v_{name} is not None else {read})"

    def _Getattr(self, node: nodes.Getattr) -> str:
        return self._lookup(self.expr(node.node), node.attr)

    def _Getitem(self, node: nodes.Getitem) -> str:
        if not isinstance(node.arg, nodes.Const):
            raise _Unsupported("dynamic subscript")
        key = node.arg.value
        if type(key) is int:
            return f"_index({self.expr(node.node)}, {key!r})"
        return self._lookup(self.expr(node.node), key)

    def _Const(self, node: nodes.Const) -> str:
        value = node.value
        if type(value) is str or type(value) is bool or value is None:
            return repr(value)
        if type(value) is float and math.isfinite(value):
            return repr(value)
        if type(value) is int and value.bit_length() < 64:
            return repr(value)
        if isinstance(value, _LITERALS):
            return self.bind(value)  # inf, nan, huge integers: no literal spells them
        raise _Unsupported("constant")

    def _literal(self, source: str) -> str:
        """A literal through the size guard templates.py puts around it for Jinja."""
        if self.jinja.globals[SIZE_GUARD] is not sized:
            raise _Unsupported("size guard")
        self.calls = True
        self.units += 1
        # _lb: the expression's budget (the function's _b), or None when it needs none.
        return f"{self.bind(sized_in)}(_lb, {source})"

    def _List(self, node: nodes.List) -> str:
        return self._literal("[" + ", ".join(self.expr(i) for i in node.items) + "]")

    def _Tuple(self, node: nodes.Tuple) -> str:
        self.plain = False  # materialise makes a list of a tuple holding containers
        return self._literal("(" + "".join(self.expr(i) + ", " for i in node.items) + ")")

    def _Dict(self, node: nodes.Dict) -> str:
        pairs = ", ".join(f"{self.expr(p.key)}: {self.expr(p.value)}" for p in node.items)
        return self._literal("{" + pairs + "}")

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
        if any(op.op not in _OPERATORS for op in node.ops):
            raise _Unsupported("compare")
        # The compare guard on the left operand, as templates.py puts it in for Jinja.
        self.calls = self.spends = True
        guard = self.bind(self.jinja.filters[COMPARE_GUARD])
        parts = [f"{guard}({self.expr(node.expr)})"]
        for op in node.ops:
            parts.append(f"{_OPERATORS[op.op]} {self.expr(op.expr)}")
        return "(" + " ".join(parts) + ")"

    def _Concat(self, node: nodes.Concat) -> str:
        if self.jinja.globals[CONCAT_GUARD] is not bounded_concat:
            raise _Unsupported("concat guard")
        self.calls = self.spends = True
        return f"{self.bind(bounded_concat)}(" + ", ".join(self.expr(n) for n in node.nodes) + ")"

    def _Test(self, node: nodes.Test) -> str:
        return self._apply(node, self.jinja.tests)

    def _Filter(self, node: nodes.Filter) -> str:
        return self._apply(node, self.jinja.filters)

    def _apply(self, node: nodes.Filter | nodes.Test, functions: Mapping[str, Any]) -> str:
        """A filter or test call as Jinja's code generator writes it: the function, what
        its pass_* marker asks for, the value, the arguments, the keyword arguments."""
        if node.node is None or node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _Unsupported("call shape")
        function = functions.get(node.name)
        if function is None or node.name.startswith("_"):
            raise _Unsupported("unknown filter or test")
        self.calls = True
        linear = unguarded_in(node.name, function) if isinstance(node, nodes.Filter) else None
        if linear is not None:
            # merge and compact charge the budget they are given (_lb, as literals do):
            # one unit of UNBUDGETED_UNITS per operand.
            if node.kwargs:
                raise _Unsupported("call shape")
            self.units += 1 + len(node.args)
            operands = [self.expr(node.node), *(self.expr(arg) for arg in node.args)]
            return f"{self.bind(linear)}(_lb, {', '.join(operands)})"
        self.spends = True
        if isinstance(node, nodes.Filter) and node.name not in _PLAIN_FILTERS:
            self.plain = False
        parts: list[str] = []
        pass_arg = _PassArg.from_obj(function)
        if pass_arg is _PassArg.context:
            parts.append(self.bind(self.context))
        elif pass_arg is _PassArg.eval_context:
            parts.append(self.bind(self.context.eval_ctx))
        elif pass_arg is _PassArg.environment:
            parts.append(self.bind(self.jinja))
        elif pass_arg is not None:
            raise _Unsupported("call shape")
        parts.append(self.expr(node.node))
        parts.extend(self.expr(arg) for arg in node.args)
        for keyword in cast(list[nodes.Keyword], node.kwargs):
            if not keyword.key.isidentifier():
                raise _Unsupported("keyword")
            parts.append(f"{keyword.key}={self.expr(keyword.value)}")
        return f"{self.bind(function)}({', '.join(parts)})"

    def evaluate(self, node: nodes.Node, target: str, depth: int) -> None:
        """Lines that set ``target`` to one expression's result, as Jinja's render of
        it returns it: within a budget of its own when it calls anything that could
        exhaust one, and through the result check (``materialise``).

        An expression whose only calls are the size guard of literals and the
        unguarded (linear) filters, at most UNBUDGETED_UNITS literals, merge
        operands and compact calls together, cannot exhaust a budget's steps or work,
        whatever its data: it runs without one (each of them is still refused past the
        output limit, by the same checks). What it gives up is only the deadline's
        clock reading, for a run of linear work."""
        self.calls = self.spends = False
        self.units = 0
        self.plain = True
        value = self.expr(node)
        if not self.calls:
            self.emit(f"{target} = {value}", depth)
            self.emit(_READ_CHECK.format(value=target), depth)
            return
        if not self.spends and self.units <= UNBUDGETED_UNITS:
            if self.units:
                self.emit("_lb = None", depth)
        else:
            if self.budgets:
                # A budget of its own for this template: the function's, re-armed in
                # place (budget.arm; the first template's is the one the function
                # started with).
                self.emit(f"_b[0] = {MAX_RENDER_STEPS}; _b[1] = {MAX_RENDER_WORK}", depth)
                self.emit("_b[2] = _monotonic() + _b[3]", depth)
            self.budgets += 1
            if self.units:
                self.emit("_lb = _b", depth)
        self.emit(f"{target} = {value}", depth)
        check = _READ_CHECK if self.plain else _BUILT_CHECK
        for line in check.format(value=target).split("\n"):
            self.emit(line, depth)

    # -- statements (the tree) ----------------------------------------------------------

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    def node(self, node: Any, target: str, depth: int) -> None:
        """Code that sets ``target`` to the node's value, or to ``_DROP``."""
        from connector.templating.templates import CompiledTemplate

        if type(node) is CompiledTemplate:
            self.evaluate(self.template(node), target, depth)
            self.emit(f"if {target} is None: {target} = _DROP", depth)
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
                    self.evaluate(self.template(child), value, depth)
                    self.emit(f"if {value} is not None:", depth)
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

    @staticmethod
    def template(node: Any) -> nodes.Expr:
        """The expression of a single-expression template (CompiledTemplate decides
        which those are; a text template is left to Jinja)."""
        if node.expression is None:
            raise _Unsupported("text template")
        expression: nodes.Expr = node.expression
        return expression


def _finish(generator: _Generator, body: list[str]) -> FastFunction:
    """The function's source: the scope's names bound, then the body; within a budget
    (budget.arm, disarmed when the function ends however it ends) when an expression of
    it calls anything."""
    from connector.core.values import Values

    generator.env["_Values"] = Values
    prologue = ["def render(scope):"]
    for name in sorted(generator.scope_names):
        # A name the scope lacks: Jinja decides (and reports) on the ordinary path.
        prologue.append(f"    if {name!r} not in scope: raise Fallback({name!r})")
        prologue.append(f"    {generator.local(name)} = scope[{name!r}]")
        if name in generator.read_names:
            local = generator.local(name)
            prologue.append(f"    _v_{name} = {local}.get if type({local}) is _Values else None")
    if generator.budgets:
        body = [
            "    _b = _arm()",
            "    try:",
            *("    " + line for line in body),
            "    finally:",
            "        _b[0] = _b[1] = _b[2] = _IDLE  # budget.disarm",
        ]
    return FastFunction("\n".join(prologue + body), generator.env)


def expression_function(node: nodes.Node, env: SandboxedEnvironment) -> FastFunction | None:
    """A function evaluating one expression with ``env``'s filters and tests, as Jinja
    evaluates it in ``env``, or None when it is outside the subset."""
    generator = _Generator(env, None)
    return _generated(generator, lambda: generator.evaluate(node, "value", 1), "value")


def tree_function(node: Any, env: SandboxedEnvironment, drop: object) -> FastFunction | None:
    """One function rendering a compiled template tree (see templates.TemplateTree), or
    None when a part of it is outside the subset (the tree then renders node by node)."""
    generator = _Generator(env, drop)
    return _generated(generator, lambda: generator.node(node, "result", 1), "result")


def _generated(
    generator: _Generator, write: Callable[[], None], result: str
) -> FastFunction | None:
    """The function ``write`` has the generator write, returning ``result``; None when
    it meets a part outside the subset."""
    try:
        write()
    except _Unsupported:
        return None
    generator.emit(f"return {result}", 1)
    return _finish(generator, generator.lines)
