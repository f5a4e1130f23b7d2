"""The exceptions the engine raises, in one place.

The hierarchy::

    ConnectorError                  base of everything the engine raises on purpose
    ├── ManifestError               a manifest breaks the format; raised at load time,
    │                               names the file and the JSON path of the fault
    ├── UnknownModuleError          a module id that no loaded app declares
    └── RunError                    a module run failed; ``type`` is Make's error name
        ├── DataError               bad input: fields broke rules, each listed in
        │                           ``faults``. Nothing was sent.
        ├── InvalidConfigurationError
        │                           the connection or a manifest template is unusable
        │                           (bad base URL, a template that fails at run time;
        │                           a connection's faulty fields listed in ``faults``)
        ├── InvalidAccessTokenError the remote refused the credentials (401/403)
        ├── RateLimitError          the remote said 429 and retries ran out
        ├── RemoteConnectionError   network failure or timeout ("ConnectionError")
        └── RemoteRuntimeError      any other remote failure, e.g. 5xx ("RuntimeError")

Why a separate ``type`` string: hosts and the CLI report errors with Make's names
(``DataError``, ``ConnectionError``, ...). Two of those shadow Python builtins, so the
classes carry a prefix and the Make name lives in ``type``.

Every message is built by the engine from field names, rules and (redacted) remote
answers; no error ever carries a connection secret. As a last guard, a ``RunError``'s
message passes the redaction chokepoint (:func:`connector.core.redaction.redact_text`)
whenever it is set, so even text the engine did not foresee (a mapped value quoted in a
rule's message, a URL path holding the key) is redacted in every escaped form.
``RunError.to_dict`` is the exact shape the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from connector.core.redaction import redact_text

__all__ = [
    "ConnectorError",
    "DataError",
    "Fault",
    "InvalidAccessTokenError",
    "InvalidConfigurationError",
    "ManifestError",
    "RateLimitError",
    "RemoteConnectionError",
    "RemoteRuntimeError",
    "RunError",
    "UnknownModuleError",
]


class ConnectorError(Exception):
    """Base class of every error the engine raises deliberately."""


class ManifestError(ConnectorError):
    """A manifest is malformed or refers to something that does not exist.

    ``source`` is the file (or ``<dict>``), ``path`` the JSON path of the fault such as
    ``$.parameters[2].type``.
    """

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        super().__init__(f"{source}: {path}: {message}")


class UnknownModuleError(ConnectorError, LookupError):
    """No loaded app declares this module id."""

    def __init__(self, module_id: str, known: list[str]) -> None:
        self.module_id = module_id
        self.known = known
        expected = ", ".join(known) if known else "(no modules loaded)"
        super().__init__(f"unknown module {module_id!r}, expected one of: {expected}")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of the input: the field's path (``traits.address.city``,
    ``customTraits[2]``), the rule it broke, and the message that says so.

    ``rule`` is one of a small vocabulary, named after the JSON Schema keywords
    ``describe`` gives forms where there is one: ``required``, ``type``, ``format``,
    ``minLength``, ``maxLength``, ``pattern``, ``minimum``, ``maximum``, ``minItems``,
    ``maxItems``, ``enum``, ``additionalProperties`` (an unknown field), and
    ``oneOfRequired``, ``reserved``, ``uniqueKeys``, ``mapping`` (a builder's template
    that could not be rendered); ``invalid`` for anything else.
    """

    field: str | None
    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class RunError(ConnectorError):
    """A module run failed. ``field`` names the parameter at fault, when there is one;
    ``faults`` lists every field at fault where there are several (a DataError always
    has at least one; a connection whose fields break rules lists them too)."""

    type: ClassVar[str] = "RuntimeError"
    #: Whether sending the same request again later may succeed (a class default; an
    #: instance may say otherwise, such as a 501 answer, which is a RuntimeError too).
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int | None = None,
        attempts: int | None = None,
        faults: Sequence[Fault] = (),
    ) -> None:
        super().__init__()
        self.message = message
        self.field = redact_text(field) if field else field
        self.status = status
        self.attempts = attempts
        self.faults = list(faults)
        #: Set when the run was stored as an incomplete execution to retry later.
        self.incomplete_id: str | None = None

    @property
    def message(self) -> str:
        """The message, redacted (see the module docstring); ``str(error)`` too."""
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message = redact_text(str(text))
        self.args = (self._message,)

    @property
    def faults(self) -> list[Fault]:
        """Every fault, each redacted like the message (see the module docstring)."""
        return self._faults

    @faults.setter
    def faults(self, faults: Sequence[Fault]) -> None:
        self._faults = [_redacted(fault) for fault in faults]

    def redact(self, redact: Callable[[str], str]) -> None:
        """Pass the message, and every fault's, through ``redact`` (mapped text may
        quote anything, a secret included)."""
        self.message = redact(self.message)
        self.faults = [Fault(f.field, f.rule, redact(f.message)) for f in self.faults]

    def __str__(self) -> str:
        return self._message

    def to_dict(self) -> dict[str, Any]:
        """The ``{"type", "message", "field"}`` object hosts and the CLI report, and
        ``faults`` (``[{field, rule, message}]``) where there are any."""
        out: dict[str, Any] = {
            "type": self.type,
            "message": redact_text(self.message),
            "field": self.field,
        }
        if self.status is not None:
            out["status"] = self.status
        if self.attempts is not None:
            out["attempts"] = self.attempts
        if self.incomplete_id is not None:
            out["incompleteId"] = self.incomplete_id
        if self.faults:
            out["faults"] = [_redacted(fault).to_dict() for fault in self.faults]
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, field={self.field!r})"


class DataError(RunError):
    """Bad input. Raised before anything is sent (or for a remote 400/413/422).

    ``field`` and ``message`` are those of the first fault; ``faults`` lists every one
    (a form shows them all at once). An error about one field has one fault.
    """

    type = "DataError"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        rule: str = "invalid",
        faults: Sequence[Fault] = (),
        status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        faults = list(faults) or [Fault(field, rule, message)]
        super().__init__(message, field=field, status=status, attempts=attempts, faults=faults)
        self.rule = rule

    @classmethod
    def of(cls, faults: Sequence[Fault]) -> DataError:
        """The error of several faults, named after the first."""
        first = faults[0]
        return cls(first.message, field=first.field, rule=first.rule, faults=faults)


def _redacted(fault: Fault) -> Fault:
    """The fault through the redaction chokepoint, as a message is."""
    field = redact_text(fault.field) if fault.field else fault.field
    return Fault(field, fault.rule, redact_text(fault.message))


class InvalidConfigurationError(RunError):
    """The connection or the module's configuration cannot work."""

    type = "InvalidConfigurationError"


class InvalidAccessTokenError(RunError):
    """The remote refused the credentials."""

    type = "InvalidAccessTokenError"


class RateLimitError(RunError):
    """The remote kept answering 429."""

    type = "RateLimitError"
    retryable = True


class RemoteConnectionError(RunError):
    """The remote could not be reached, or did not answer in time."""

    type = "ConnectionError"
    retryable = True


class RemoteRuntimeError(RunError):
    """Any other remote failure, such as a 5xx."""

    type = "RuntimeError"
    retryable = True


#: Make's error names, for hosts that map them back to classes.
ERROR_TYPES: dict[str, type[RunError]] = {
    cls.type: cls
    for cls in (
        DataError,
        InvalidConfigurationError,
        InvalidAccessTokenError,
        RateLimitError,
        RemoteConnectionError,
        RemoteRuntimeError,
    )
}
