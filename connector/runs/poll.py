"""Polling triggers: the items that are new since the last poll, oldest first.

A polling trigger (``kind: trigger``) sends its request and reads its pages as a
search does (:mod:`connector.runs.pages`); ``trigger.id`` and ``trigger.date`` give
each item's identity and date. The *state* a host keeps between polls says where the
last poll stopped: the date of the newest item handed over and the ids handed over at
exactly that date (two items may share a date; the ids tell them apart).

One poll:

1. Where to start: the state's date, or on the first poll the ``start`` parameter:
   ``now`` (nothing before this poll: no request is sent, the state is set to now),
   ``all``, or ``since`` (the ``since`` parameter's date). Request templates see it as
   ``state.since`` (ISO 8601, or none for ``all``) to ask the API for new items only.
2. Every page is read; items dated before the cutoff, or at it with an id already
   handed over, are dropped, and so are repeats within the poll.
3. The rest, sorted oldest first (then by id), are handed over up to the ``limit``
   parameter; the remainder is newer than the new state, so the next poll returns it.
   Nothing is skipped and nothing comes twice.
4. The state keeps no item id in clear (an id may be an email address or a token):
   ``ids`` holds each id's sha256 digest (hex), marked ``"idHash": "sha256"``. Digests
   keep the comparison exact; a state without the mark (written before) has raw ids,
   which are read as their digests, so it keeps working.
5. The new state is *returned*, never saved here: a host saves it only after it has
   handed the bundles on (``connector poll`` writes its state file after printing), so
   a crash in between repeats a poll rather than losing one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from connector.core.prepare import (
    check_parameters,
    prepare_message,
    prepared_from,
    render_part,
    run_scope,
)
from connector.core.types import parse_datetime
from connector.errors import InvalidConfigurationError, RemoteRuntimeError
from connector.runs.pages import pages

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["ID_HASH", "PollResult", "digest_id", "poll", "with_digests"]

#: How a state's ``ids`` are kept: their sha256 digests, as hex.
ID_HASH = "sha256"

#: The most ids kept in a state (ids sharing the newest date); past it, a poll fails
#: rather than forget which items it handed over.
MAX_STATE_IDS = 10_000


class PollResult(NamedTuple):
    """A poll's bundles (oldest first) and the state to save once they are handed on."""

    bundles: list[dict[str, Any]]
    state: dict[str, Any]


class _Item(NamedTuple):
    date: datetime
    id: str
    item: Any
    scope: dict[str, Any]


def poll(
    engine: Engine,
    module_id: str,
    connection: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    state: Mapping[str, Any] | None = None,
) -> PollResult:
    """One poll of a polling trigger; raises a RunError subclass (the state is then
    unchanged: the host keeps the one it had)."""
    module = engine.registry.get(module_id)
    if not module.is_polling:
        raise InvalidConfigurationError(
            f"module {module_id} is a {module.manifest.kind} module, not a polling trigger"
        )
    conn = engine.connection(module, connection)
    cutoff, seen = _read_state(module_id, state)
    if not state:  # the first poll: where to start is the builder's choice
        values = check_parameters(module, conn, parameters)
        start = values.get("start") or "now"
        if start == "now":
            return PollResult([], _state(module_id, datetime.now(UTC), []))
        cutoff = parse_datetime(values["since"]) if start == "since" else None
    since = {"since": _text(cutoff) if cutoff else None}
    message = prepare_message(module, conn, parameters, None, {"state": since})
    prepared = prepared_from(module, conn, message)
    paging = module.paging
    assert paging is not None and paging.item_id is not None and paging.item_date is not None
    scope = run_scope(prepared)
    scope["state"] = since
    fresh: dict[str, _Item] = {}
    for page_scope, items in pages(engine, module, conn, scope, prepared.request):
        for item in items:
            item_scope = {**page_scope, "item": item}
            ident = render_part(module, "trigger.id", paging.item_id, item_scope, conn)
            raw_date = render_part(module, "trigger.date", paging.item_date, item_scope, conn)
            if ident is None or ident == "":
                raise RemoteRuntimeError(f"{module_id}: an item has no id (trigger.id)")
            try:
                date = parse_datetime(raw_date)
            except (ValueError, OverflowError, OSError):
                raise RemoteRuntimeError(
                    conn.redact(
                        f"{module_id}: item {str(ident)[:80]!r} has no readable date "
                        f"(trigger.date gave {str(raw_date)[:60]!r})"
                    )
                ) from None
            key = str(ident)
            if cutoff is not None and (
                date < cutoff or (date == cutoff and digest_id(key) in seen)
            ):
                continue
            fresh.setdefault(key, _Item(date, key, item, item_scope))
    limit = int(prepared.parameters.get("limit") or 100)
    chosen = sorted(fresh.values(), key=lambda i: (i.date, i.id))[:limit]
    bundles: list[dict[str, Any]] = []
    for entry in chosen:
        output = render_part(module, "output", module.output, entry.scope, conn)
        for bundle in output if isinstance(output, list) else [output]:
            bundles.append(conn.redact.data(bundle if bundle is not None else {}))
    if not chosen:
        return PollResult(bundles, _state(module_id, cutoff, sorted(seen)))
    newest = chosen[-1].date
    ids = [digest_id(e.id) for e in chosen if e.date == newest]
    if cutoff is not None and newest == cutoff:
        ids = sorted(set(ids) | seen)
    if len(ids) > MAX_STATE_IDS:
        raise RemoteRuntimeError(
            f"{module_id}: over {MAX_STATE_IDS} items share the date {_text(newest)}; "
            "the state cannot tell them apart"
        )
    return PollResult(bundles, _state(module_id, newest, ids))


def _read_state(
    module_id: str, state: Mapping[str, Any] | None
) -> tuple[datetime | None, set[str]]:
    if not state:
        return None, set()
    if not isinstance(state, Mapping) or state.get("module") not in (None, module_id):
        raise InvalidConfigurationError(
            f"the state belongs to {state.get('module') if isinstance(state, Mapping) else '?'}"
            f", not {module_id}: give this trigger its own state",
            field="state",
        )
    since = state.get("since")
    ids = state.get("ids") or []
    if not isinstance(ids, list):
        raise InvalidConfigurationError("the state's 'ids' must be a list", field="state")
    try:
        cutoff = parse_datetime(since) if since is not None else None
    except (ValueError, OverflowError, OSError):
        raise InvalidConfigurationError(
            f"the state's 'since' is not a date: {str(since)[:60]!r}", field="state"
        ) from None
    marked = state.get("idHash")
    if marked not in (None, ID_HASH):
        raise InvalidConfigurationError(
            f"the state's 'idHash' is {str(marked)[:20]!r}, expected {ID_HASH!r}", field="state"
        )
    return cutoff, {str(i) for i in ids} if marked else {digest_id(str(i)) for i in ids}


def _text(moment: datetime) -> str:
    """Full precision, UTC: a state read back compares equal to the item's date."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def digest_id(ident: str) -> str:
    """How a state keeps an item's id: its sha256 digest, as hex (never the id)."""
    return hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()


def with_digests(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` as :func:`poll` writes it: raw ``ids`` (a state without ``idHash``,
    e.g. a fixture's expected one) replaced by their sorted digests."""
    if state.get("idHash") is not None or not isinstance(state.get("ids"), list):
        return dict(state)
    return {**state, "ids": sorted(digest_id(str(i)) for i in state["ids"]), "idHash": ID_HASH}


def _state(module_id: str, since: datetime | None, ids: Iterable[str]) -> dict[str, Any]:
    return {
        "module": module_id,
        "since": _text(since) if since else None,
        "ids": sorted(ids),
        "idHash": ID_HASH,
    }
