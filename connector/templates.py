"""Templates: Jinja2 in the sandbox, compiled once, rendered many times.

Builders' mappings and integrators' manifests are untrusted, so every template runs in
an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with ``StrictUndefined`` and a
whitelist of filters. On top of Jinja's sandbox the engine bounds what one template
can produce: a cap on string/list sizes made by ``*`` and ``**`` and on ``range``, and
a cap on rendered output size, so ``{{ 'a' * 10**9 }}`` is an error, not an outage.

A template that is exactly one expression (``"{{ parameters.traits }}"``) keeps the
native type of its value: an object stays an object, a number a number. Anything else
renders to a string. Strings without ``{{`` or ``{%`` are literals and skip Jinja.

A :class:`TemplateTree` is a JSON value whose string leaves are templates; rendering it
drops keys whose value came out ``None`` (an unmapped optional field is *absent*, not
``null``), and drops objects that became empty only because of that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateAssertionError, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from connector.codegen import compile_tree_function
from connector.fastpath import Evaluator, Fallback, compile_expression

__all__ = [
    "MAX_OUTPUT",
    "CompiledTemplate",
    "TemplateTree",
    "compile_template",
    "compile_tree",
    "environment",
    "is_template",
    "referenced_names",
]

#: Largest string or collection one template may build, in characters/items.
MAX_OUTPUT = 1_000_000
#: Largest ``range()`` a template may iterate over.
MAX_RANGE = 10_000

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


class _Sentinel:
    """Marks a key that rendered to nothing and must be dropped."""


_DROP = _Sentinel()


def _base64(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode("ascii")


def _merge(*objects: Any) -> dict[str, Any]:
    """Shallow-merge mappings left to right; ``None`` arguments are skipped."""
    out: dict[str, Any] = {}
    for obj in objects:
        if obj is None:
            continue
        if type(obj) is not dict and not isinstance(obj, Mapping):
            raise TypeError(f"merge expects objects, got {type(obj).__name__}")
        out.update(obj)
    return out


_SCALARS = frozenset({str, int, float, bool})


def _compact(value: Any) -> Any:
    """Drop ``None``, empty text and empty objects/lists, recursively."""
    if type(value) is dict or isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if type(v) not in _SCALARS:
                v = _compact(v)
            if not (v is None or v == "" or (type(v) in (dict, list) and not v)):
                out[k] = v
        return out
    if isinstance(value, list):
        return [v for v in (_compact(v) for v in value) if not _is_blank(v)]
    return value


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, dict | list) and not value)


def _tojson(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _fromjson(value: Any) -> Any:
    try:
        return json.loads(str(value), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_s, new_s = str(value), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None:
        hits = min(hits, max(count, 0))
    if len(text) + hits * (len(new_s) - len(old_s)) > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
    return text.replace(old_s, new_s, -1 if count is None else count)


#: Largest integer a template may build, in bits (a 30,000-digit number).
MAX_INT_BITS = 100_000


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise OverflowError("number too large")


def _sha256(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def _iso(value: Any) -> str:
    from connector.types import format_datetime, parse_datetime

    return format_datetime(parse_datetime(value))


#: Filters added to Jinja's built-ins. Each is pure and cheap.
EXTRA_FILTERS: dict[str, Callable[..., Any]] = {
    "base64": _base64,
    "merge": _merge,
    "compact": _compact,
    "tojson": _tojson,
    "fromjson": _fromjson,
    "sha256": _sha256,
    "iso8601": _iso,
    "replace": _replace,
}
#: Jinja's own filters that stay available; the rest (e.g. ``attr``, ``xmlattr``,
#: ``indent``-style formatting with huge widths) are removed.
ALLOWED_BUILTIN_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "default",
        "d",
        "dictsort",
        "escape",
        "e",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "count",
        "list",
        "lower",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "replace",
        "reverse",
        "round",
        "select",
        "selectattr",
        "sort",
        "string",
        "sum",
        "title",
        "trim",
        "truncate",
        "unique",
        "upper",
        "urlencode",
        "items",
    }
)


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise OverflowError(f"range of {len(r)} items exceeds the limit of {MAX_RANGE}")
    return r


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with bounded ``*`` and ``**``, and JSON-first attribute lookup."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Bundles are JSON: ``order.items`` must be the "items" key, not dict.items.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise OverflowError("exponent too large")
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(abs(left).bit_length() * max(right, 0))
            return left**right
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                if sized and _size(seq) * n > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(abs(left).bit_length() + abs(right).bit_length())
            return left * right
        if operator == "+":
            sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
            if sized and _size(left) + _size(right) > MAX_OUTPUT:
                raise OverflowError(f"result would exceed {MAX_OUTPUT} items")
            return left + right
        if operator == "%" and isinstance(left, str):
            # printf-style widths ('%2000000s') allocate before any check could run.
            raise OverflowError("string % formatting is not available in templates")
        return super().call_binop(context, operator, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # Text methods that grow their result from a small call ('a'.ljust(10**9)) are
        # checked before they allocate (format is refused in wrap_str_format).
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _WIDTH_METHODS:
                width = args[0] if args else kwargs.get("width", 0)
                if isinstance(width, int) and width > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
            elif name == "expandtabs":
                size = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(size, int) and owner.count("\t") * size > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
            elif name == "replace" and len(args) >= 2:
                return _replace(owner, *args[:3])
            elif name == "join" and args:
                return _join(args[0], owner)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # The sandbox wraps str.format/format_map on access; their widths ('{:>9999999}')
        # allocate before any check could run, so formatting is refused outright.
        if super().wrap_str_format(value) is None:
            return None

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise OverflowError("str.format is not available in templates; use ~")

        return refuse


_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def _size(value: Any) -> int:
    """Characters a string, or a list of strings, stands for (items count as one)."""
    if isinstance(value, str):
        return len(value)
    return sum(len(v) if isinstance(v, str) else 1 for v in value)


def _join(value: Any, d: Any = "") -> str:
    """The ``join`` filter, bounded: refuses before building an oversized string."""
    sep = str(d)
    parts: list[str] = []
    size = 0
    for item in value:
        text = str(item)
        size += len(text) + (len(sep) if parts else 0)
        if size > MAX_OUTPUT:
            raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
        parts.append(text)
    return sep.join(parts)


def _sum(value: Any, attribute: Any = None, start: Any = 0) -> Any:
    """The ``sum`` filter, for numbers only: summing lists would concatenate them."""
    items = list(value)
    if attribute is not None or not isinstance(start, int | float):
        raise TypeError("sum adds numbers only")
    for item in items:
        if not isinstance(item, int | float) or isinstance(item, bool):
            raise TypeError("sum adds numbers only")
    return sum(items, start)


# Bounded replacements of Jinja's own join and sum (defined after the sandbox class).
EXTRA_FILTERS.update({"join": _join, "sum": _sum})


class _StrictUndefined(StrictUndefined):
    """Also fails when printed inside a container (``{{ [nope] }}``), not only alone."""

    __slots__ = ()
    __repr__ = StrictUndefined._fail_with_undefined_error


def _materialise(value: Any) -> Any:
    """A native result as plain data: iterators become lists, undefined values fail."""
    if isinstance(value, str):
        if len(value) > MAX_OUTPUT:
            raise OverflowError(f"result exceeds {MAX_OUTPUT} characters")
        return value
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, StrictUndefined):
        str(value)  # raises UndefinedError with Jinja's message
    if isinstance(value, dict):
        return {k: _materialise(v) for k, v in value.items()} if _needs_walk(value) else value
    if isinstance(value, list | tuple):
        return [_materialise(v) for v in value] if _needs_walk(value) else value
    if isinstance(value, Iterator):
        items = []
        for item in value:
            items.append(_materialise(item))
            if len(items) > MAX_OUTPUT:
                raise OverflowError(f"result would exceed {MAX_OUTPUT} items")
        return items
    return value


def _needs_walk(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(not (isinstance(v, str | int | float | bool) or v is None) for v in items)


def _build_environment() -> _Environment:
    env = _Environment(undefined=_StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters = {k: v for k, v in env.filters.items() if k in ALLOWED_BUILTIN_FILTERS}
    env.filters.update(EXTRA_FILTERS)
    env.tests.pop("sameas", None)
    env.globals = {"range": _bounded_range, "dict": dict, "now": _utcnow}
    return env


_ENV = _build_environment()


def environment() -> _Environment:
    """The shared sandboxed environment (exposed for tests and docs)."""
    return _ENV


def is_template(text: str) -> bool:
    """Whether a string needs Jinja at all."""
    return "{{" in text or "{%" in text or "{#" in text


class CompiledTemplate:
    """A template compiled once; :meth:`render` evaluates it against a scope."""

    __slots__ = ("_compiled", "_expr", "_fast", "_single", "_template", "ast", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._expr: Any = None
        self._template: Any = None
        self._compiled = False
        self._fast: Evaluator | None = None
        # Raises jinja2.TemplateSyntaxError; unknown filters and tests are checked here
        # too, so every fault shows at load time although Jinja's own code generation
        # (~0.5 ms a template) waits until a template first needs it, if ever.
        self.ast: nodes.Template = _parse(source)
        _check_known(self.ast)
        match = _SINGLE_EXPRESSION.match(source)
        self._single = match.group("expr") if match and _is_single_output(self.ast) else None
        if self._single is not None:
            output = self.ast.body[0]
            assert isinstance(output, nodes.Output)
            try:
                self._fast = compile_expression(output.nodes[0], EXTRA_FILTERS)
            except Fallback:
                self._fast = None
        if self._fast is None:
            self._compile()

    def _compile(self) -> None:
        if self._single is not None:
            self._expr = _ENV.compile_expression(self._single, undefined_to_none=False)
        else:
            self._template = _ENV.from_string(self.source)
        self._compiled = True

    @property
    def fast(self) -> bool:
        """Whether this template is in the fast path's subset."""
        return self._fast is not None

    def render(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate against ``scope``; raises ``jinja2.TemplateError`` or ``OverflowError``."""
        if self._fast is not None:
            try:
                value = self._fast(scope)
            except Fallback:
                pass  # Jinja gives the exact semantics (and error) for this case.
            else:
                if type(value) is str and len(value) > MAX_OUTPUT:
                    raise OverflowError(f"result exceeds {MAX_OUTPUT} characters")
                return value
        return self.render_jinja(scope)

    def render_jinja(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate with the full sandboxed Jinja, skipping the fast path."""
        if not self._compiled:
            self._compile()
        if self._expr is not None:
            value = self._expr(**scope)
            return _materialise(value)
        # Piece by piece, so a runaway loop stops at the cap instead of after it.
        pieces: list[str] = []
        size = 0
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


def _check_known(ast: nodes.Template) -> None:
    """Jinja reports unknown filters and tests only when generating code: check first."""
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        known = _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise TemplateAssertionError(f"No {kind} named {node.name!r}.", node.lineno, None, None)


def _is_single_output(ast: nodes.Template) -> bool:
    if len(ast.body) != 1 or not isinstance(ast.body[0], nodes.Output):
        return False
    parts = ast.body[0].nodes
    return len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData)


class TemplateTree:
    """A JSON value whose string leaves are compiled templates."""

    __slots__ = ("_function", "_generated", "_node", "literal")

    def __init__(self, value: Any) -> None:
        self._node = _compile_node(value)
        #: True when nothing in the tree needs Jinja: render returns a copy at once.
        self.literal = not _has_template(self._node)
        #: The whole tree as one generated function, when every template allows it;
        #: generated at the first render, so loading manifests stays cheap.
        self._function: Callable[[Mapping[str, Any]], Any] | None = None
        self._generated = self.literal

    def _generate(self) -> None:
        self._function = compile_tree_function(self._node, EXTRA_FILTERS, MAX_OUTPUT, _DROP)
        self._generated = True

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The rendered value. A literal tree is returned as is: callers never mutate it."""
        if self.literal:
            return self._node
        if not self._generated:
            self._generate()
        if self._function is not None:
            try:
                value = self._function(scope)
            except Fallback:
                value = _render_node(self._node, scope)
        else:
            value = _render_node(self._node, scope)
        return None if value is _DROP else value

    @property
    def value(self) -> Any:
        """The tree itself, for a literal tree (nothing to render)."""
        return self._node

    def render_by_node(self, scope: Mapping[str, Any]) -> Any:
        """:meth:`render` without the generated function (for tests that compare)."""
        if self.literal:
            return self._node
        value = _render_node(self._node, scope)
        return None if value is _DROP else value

    def templates(self) -> list[tuple[str, CompiledTemplate]]:
        """Every template with its JSON path (relative, e.g. ``.traits.email``)."""
        out: list[tuple[str, CompiledTemplate]] = []
        _collect(self._node, "", out)
        return out


def compile_template(source: str) -> CompiledTemplate:
    return CompiledTemplate(source)


def compile_tree(value: Any) -> TemplateTree:
    return TemplateTree(value)


_SHARED: dict[str, CompiledTemplate] = {}


def _shared(source: str) -> CompiledTemplate:
    """One compiled template per distinct source: manifests repeat many (the context
    and output templates of every Segment module), and compiled ones are immutable."""
    template = _SHARED.get(source)
    if template is None:
        if len(_SHARED) > 10_000:
            _SHARED.clear()
        template = _SHARED[source] = CompiledTemplate(source)
    return template


def _compile_node(value: Any) -> Any:
    if isinstance(value, str):
        return _shared(value) if is_template(value) else value
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


def referenced_names(template: CompiledTemplate) -> list[tuple[str, ...]]:
    """Attribute chains rooted at free names, e.g. ``("parameters", "traits", "email")``.

    Only static chains (``a.b`` and ``a['b']``) are followed; the loader uses them to
    report references to parameters that do not exist.
    """
    chains: list[tuple[str, ...]] = []
    bound = {n.name for n in template.ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in template.ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        chain = _chain(node)
        if chain and chain[0] not in bound:
            chains.append(chain)
    return chains


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
