"""Templates: compiled once, rendered many times, always in the sandbox.

Every template runs in :mod:`connector.templating.sandbox` (Jinja2's immutable sandbox with the
engine's limits and filters). Common expressions, and whole trees of them, also get a
fast path (:mod:`connector.templating.fastpath`): generated Python functions that hand every case
outside their safe subset back to Jinja, so results and errors are the same either way.

A template that is exactly one expression (``"{{ parameters.traits }}"``) keeps the
native type of its value: an object stays an object, a number a number. Anything else
renders to a string. Strings without ``{{`` or ``{%`` are literals and skip Jinja.

A :class:`TemplateTree` is a JSON value whose string leaves are templates; rendering it
drops keys whose value came out ``None`` (an unmapped optional field is *absent*, not
``null``), and drops objects that became empty only because of that.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from jinja2 import TemplateAssertionError, TemplateError, TemplateSyntaxError, nodes
from jinja2.environment import TemplateExpression

from connector.templating.budget import render_budget
from connector.templating.fastpath import Fallback, FastFunction, expression_function, tree_function
from connector.templating.limits import MAX_OUTPUT
from connector.templating.sandbox import (
    COMPARE_GUARD,
    CONCAT_GUARD,
    FILTER_FAILURES,
    LOOP_GUARD,
    OUTPUT_GUARD,
    SIZE_GUARD,
    environment,
    materialise,
)

__all__ = [
    "MAX_OUTPUT",
    "RENDER_FAILURES",
    "CompiledTemplate",
    "TemplateTree",
    "compile_template",
    "compile_tree",
    "environment",
    "is_template",
    "referenced_names",
]

_ENV = environment()
#: What rendering an untrusted template may raise: a template error, a sandbox limit, or
#: a filter given the wrong kind of value. Callers turn these into the right RunError.
#: AttributeError and LookupError: Jinja's own filters raise them for values of the
#: wrong kind (``'x' | dictsort``, ``'a'.encode('nope')``). The sandbox's own set, by
#: design: what a filter may raise as it is is exactly what a render may fail with.
RENDER_FAILURES: tuple[type[BaseException], ...] = FILTER_FAILURES
_SINGLE_EXPRESSION = re.compile(r"\s*\{\{.*\}\}\s*", re.DOTALL)


class _Sentinel:
    """Marks a key that rendered to nothing and must be dropped."""


_DROP = _Sentinel()


def is_template(text: str) -> bool:
    """Whether a string needs Jinja at all."""
    return "{{" in text or "{%" in text or "{#" in text


class CompiledTemplate:
    """A template compiled once; :meth:`render` evaluates it against a scope."""

    __slots__ = (
        "_chains",
        "_compiled",
        "_expr",
        "_fast",
        "_template",
        "ast",
        "expression",
        "source",
    )

    def __init__(self, source: str) -> None:
        self.source = source
        self._expr: Any = None
        self._template: Any = None
        self._compiled = False
        self._fast: FastFunction | None = None
        self._chains: list[tuple[str, ...]] | None = None
        # Raises jinja2.TemplateSyntaxError; unknown filters and tests are checked here
        # too, so every fault shows at load time although Jinja's own code generation
        # (~0.5 ms a template) waits until a template first needs it, if ever.
        try:
            self.ast: nodes.Template = _parse(source)
        except ValueError as exc:  # an integer literal past Python's 4,300-digit limit
            raise TemplateSyntaxError(str(exc), 1) from None
        _check_allowed(self.ast)
        #: The expression, when the whole template is one ``{{ ... }}``: it then keeps
        #: its native type (decided here only: the fast path and Jinja must agree).
        self.expression: nodes.Expr | None = None
        if _SINGLE_EXPRESSION.fullmatch(source) and _is_single_output(self.ast):
            output = self.ast.body[0]
            assert isinstance(output, nodes.Output)
            self.expression = output.nodes[0]
            self._fast = expression_function(self.expression, _ENV)
        if self._fast is None:
            self._compile()

    def _compile(self) -> None:
        try:
            self._generate()
        except (SyntaxError, RecursionError, MemoryError):
            # Jinja writes Python source; Python's parser refuses code nested too deeply
            # (a chain of a hundred filters) with a SyntaxError of its own.
            raise TemplateSyntaxError("the template is nested too deeply", 1) from None

    def _generate(self) -> None:
        # A fresh AST: self.ast stays as written. A single expression keeps its native
        # value: its one output is not turned into text.
        ast = _guard(_ENV.parse(self.source), text=self.expression is None)
        if self.expression is not None:
            # Jinja's compile_expression, from the guarded AST: ``result = <expr>``.
            output = ast.body[0]
            assert isinstance(output, nodes.Output)
            body = [nodes.Assign(nodes.Name("result", "store"), output.nodes[0], lineno=1)]
            expression = nodes.Template(body, lineno=1)
            expression.set_environment(_ENV)
            self._expr = TemplateExpression(_ENV.from_string(expression), False)
        else:
            self._template = _ENV.from_string(ast)
        self._compiled = True

    def render(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate against ``scope``; raises ``jinja2.TemplateError`` or ``OverflowError``."""
        if self._fast is not None:
            try:
                return self._fast(scope)
            except Fallback:
                pass  # Jinja gives the exact semantics (and error) for this case.
        return self.render_jinja(scope)

    def render_jinja(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate with the full sandboxed Jinja, skipping the fast path."""
        if not self._compiled:
            self._compile()
        if self._expr is not None:
            with render_budget():
                value = self._expr(**scope)
                return materialise(value)
        # Piece by piece, so a runaway loop stops at the cap instead of after it; and
        # with one budget of loop iterations for the whole render (nested loops).
        pieces: list[str] = []
        size = 0
        with render_budget():
            for piece in self._template.generate(**scope):
                size += len(piece)
                if size > MAX_OUTPUT:
                    raise OverflowError(f"rendered text exceeds {MAX_OUTPUT} characters")
                pieces.append(piece)
        return "".join(pieces)


_PATH = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SIMPLE = re.compile(rf"\{{\{{\s*({_PATH}(?:\s+or\s+{_PATH})*)\s*\}}\}}")
_JINJA_WORDS = frozenset(
    {"or", "and", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False", "None"}
)


def _parse(source: str) -> nodes.Template:
    """Jinja's AST of ``source``. The most common shapes (``{{ a.b }}``,
    ``{{ a.b or c }}``) are built directly: half of all templates, at a fraction of
    the cost of Jinja's lexer and parser, which dominate the time to load manifests."""
    match = _SIMPLE.fullmatch(source)
    if match is None:
        return _ENV.parse(source)
    paths = re.split(r"\s+or\s+", match.group(1))
    parts = [p.split(".") for p in paths]
    if any(part in _JINJA_WORDS for chain in parts for part in chain):
        return _ENV.parse(source)
    exprs: list[nodes.Expr] = []
    for chain in parts:
        node: nodes.Expr = nodes.Name(chain[0], "load", lineno=1)
        for attr in chain[1:]:
            node = nodes.Getattr(node, attr, "load", lineno=1)
        exprs.append(node)
    expr = exprs[0]
    for right in exprs[1:]:
        expr = nodes.Or(expr, right, lineno=1)
    template = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
    template.set_environment(_ENV)
    return template


def _guard(ast: nodes.Template, text: bool = True) -> nodes.Template:
    """The AST with the sandbox's guards put in: every ``{% for %}`` iterable wrapped in
    the loop guard, which counts a whole render's iterations against one budget
    (budget.MAX_RENDER_STEPS), every ``~`` turned into the bounded concat (Jinja joins
    it unchecked, so a text doubled a few times reaches gigabytes), every comparison
    through the compare guard (the deadline is checked there too), and, in a ``text``
    template, every ``{{ ... }}`` through the output guard: what it writes is charged
    to the render's work budget before it joins the output or a block's capture."""
    for loop in ast.find_all(nodes.For):
        loop.iter = _call(LOOP_GUARD, [cast(nodes.Expr, loop.iter)], loop.lineno)
    if text:
        for output in ast.find_all(nodes.Output):
            output.nodes = [
                n if isinstance(n, nodes.TemplateData) else _filter(OUTPUT_GUARD, n)
                for n in output.nodes
            ]
    for compare in list(ast.find_all(nodes.Compare)):
        compare.expr = _filter(COMPARE_GUARD, compare.expr)
    for parent in ast.find_all(nodes.Node):
        if _is_guard_call(parent):
            continue  # its argument is the node it guards
        for field in parent.fields:
            child = getattr(parent, field, None)
            if isinstance(child, list):
                child[:] = [_guarded(c) for c in child]
            elif isinstance(child, nodes.Node):
                setattr(parent, field, _guarded(child))
    return ast


def _guarded(node: Any) -> Any:
    """``~`` as the bounded concat; list, tuple and dict literals through the size
    check (``{% set b = [a, a] %}`` repeated doubles what ``==`` or ``string`` walk).
    Tuples that are assignment targets (``{% for k, v in ... %}``) stay as they are."""
    if isinstance(node, nodes.Concat):
        return _call(CONCAT_GUARD, node.nodes, node.lineno)
    if isinstance(node, nodes.List | nodes.Dict) or (
        isinstance(node, nodes.Tuple) and node.ctx == "load"
    ):
        return _call(SIZE_GUARD, [node], node.lineno)
    return node


def _is_guard_call(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name in (SIZE_GUARD, CONCAT_GUARD)
    )


def _filter(name: str, node: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


def _call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None, lineno=lineno)


def _check_allowed(ast: nodes.Template) -> None:
    """Jinja reports unknown filters and tests only when generating code: check first.
    Recursive loops are refused: their inner calls (``loop(children)``) would escape
    the loop guard."""
    for loop in ast.find_all(nodes.For):
        if loop.recursive:
            raise TemplateAssertionError("recursive loops are not allowed", loop.lineno, None, None)
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        known = _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        if node.name not in known or node.name.startswith("_"):
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise TemplateAssertionError(f"No {kind} named {node.name!r}.", node.lineno, None, None)


def _is_single_output(ast: nodes.Template) -> bool:
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return False
    parts = ast.body[0].nodes
    return len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData)


class TemplateTree:
    """A JSON value whose string leaves are compiled templates."""

    __slots__ = ("_compiled", "_function", "_node", "literal")

    def __init__(self, value: Any) -> None:
        self._node = _compile_node(value)
        #: True when nothing in the tree needs Jinja: render returns the tree itself.
        self.literal = not _has_template(self._node)
        #: The whole tree as one fast-path function, when every template allows it
        #: (compiled on its first call).
        self._function = None if self.literal else tree_function(self._node, _ENV, _DROP)
        #: The generated function itself, once compiled (called without a layer).
        self._compiled: Callable[[Mapping[str, Any]], Any] | None = None

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The rendered value. A literal tree is returned as is: callers never mutate it."""
        if self.literal:
            return self._node
        function = self._compiled
        if function is None and self._function is not None:
            function = self._compiled = self._function.compiled()
        if function is not None:
            try:
                value = function(scope)
            except Fallback:
                value = _render_node(self._node, scope)
        else:
            value = _render_node(self._node, scope)
        return None if value is _DROP else value

    def render_by_node(self, scope: Mapping[str, Any]) -> Any:
        """:meth:`render` without the generated function (for tests that compare)."""
        if self.literal:
            return self._node
        value = _render_node(self._node, scope)
        return None if value is _DROP else value

    @property
    def node(self) -> Any:
        """The tree as compiled: JSON values with CompiledTemplate leaves."""
        return self._node

    def reads(self, name: str) -> bool:
        """Whether any template in the tree mentions ``name`` at all (read, bound or
        passed): templates cannot reach a scope name without writing it, so a tree for
        which this is False renders the same whatever ``name`` holds.

        That holds because no global, filter or test of the sandbox reads the render
        context's variables (``select``, ``map`` and the like take the context only for
        its environment; the fast path gives them an empty one): one that did could
        read any name, and this answer would be wrong."""
        return any(
            node.name == name
            for _, template in self.templates()
            for node in template.ast.find_all(nodes.Name)
        )

    def templates(self) -> list[tuple[str, CompiledTemplate]]:
        """Every template with its JSON path (relative, e.g. ``.traits.email``)."""
        out: list[tuple[str, CompiledTemplate]] = []
        _collect(self._node, "", out)
        return out


@functools.lru_cache(maxsize=8192)
def compile_template(source: str) -> CompiledTemplate:
    """The compiled template of ``source``, compiled once per distinct source: manifests
    repeat many (the context and output templates of every Segment module), builders
    map the same expressions run after run, and compiled templates are immutable."""
    return CompiledTemplate(source)


def compile_tree(value: Any) -> TemplateTree:
    return TemplateTree(value)


def _compile_node(value: Any) -> Any:
    if isinstance(value, str):
        return compile_template(value) if is_template(value) else value
    if isinstance(value, dict):
        return {str(k): _compile_node(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_node(v) for v in value]
    return value


def _has_template(node: Any) -> bool:
    if isinstance(node, CompiledTemplate):
        return True
    if isinstance(node, dict):
        return any(_has_template(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_template(v) for v in node)
    return False


def _render_node(node: Any, scope: Mapping[str, Any]) -> Any:
    kind = type(node)  # exact types: compiled trees hold only these (and JSON scalars)
    if kind is CompiledTemplate:
        value = node.render(scope)
        return _DROP if value is None else value
    if kind is dict:
        out: dict[str, Any] = {}
        for key, child in node.items():
            if type(child) is CompiledTemplate:
                value = child.render(scope)
                if value is not None:
                    out[key] = value
                continue
            value = _render_node(child, scope)
            if value is not _DROP:
                out[key] = value
        return _DROP if node and not out else out
    if kind is list:
        return [v for v in (_render_node(c, scope) for c in node) if v is not _DROP]
    return node


def _collect(node: Any, path: str, out: list[tuple[str, CompiledTemplate]]) -> None:
    if isinstance(node, CompiledTemplate):
        out.append((path, node))
    elif isinstance(node, dict):
        for key, child in node.items():
            _collect(child, f"{path}.{key}", out)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            _collect(child, f"{path}[{i}]", out)


def merge_operand_names(tree: TemplateTree, chain: tuple[str, ...]) -> frozenset[str] | None:
    """When ``tree`` is exactly ``{{ <chain> | merge(X) }}`` (``chain`` a static
    attribute chain such as ``request.body``), every name X mentions; else None. The
    tree then renders ``{**<chain>, **X}``, and X is the same wherever those names are."""
    template = tree.node
    if not isinstance(template, CompiledTemplate) or template.expression is None:
        return None
    node = template.expression
    if not (
        isinstance(node, nodes.Filter)
        and node.name == "merge"
        and node.node is not None
        and _chain(node.node) == chain
        and len(node.args) == 1
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
    ):
        return None
    operand = node.args[0]
    names = {name.name for name in operand.find_all(nodes.Name)}  # its descendants
    if isinstance(operand, nodes.Name):  # X itself, as in merge(parameters)
        names.add(operand.name)
    return frozenset(names)


def referenced_names(template: CompiledTemplate) -> list[tuple[str, ...]]:
    """Attribute chains rooted at free names, e.g. ``("parameters", "traits", "email")``.

    Only static chains (``a.b`` and ``a['b']``) are followed; the loader uses them to
    report references to parameters that do not exist.
    """
    if template._chains is None:  # computed once: the loader and registry both ask
        bound: set[str] = set()
        found: list[tuple[str, ...]] = []
        for node in template.ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
            if isinstance(node, nodes.Name) and node.ctx in ("store", "param"):
                bound.add(node.name)
                continue
            chain = _chain(node)
            if chain:
                found.append(chain)
        template._chains = [chain for chain in found if chain[0] not in bound]
    return list(template._chains)


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None


def describe_error(exc: BaseException) -> str:
    """A short, secret-free message for a template failure."""
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"
