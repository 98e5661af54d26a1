"""The operators' view of many sessions: by status, receipt status, user and creation time, newest
first, paged, read from the by_status, by_ebarimt_status and by_user indexes (never a Scan).

A listing reads one or more index partitions ("streams"): one user's sessions (by_user), one
receipt status (by_ebarimt_status), one status (by_status), or every status merged by creation
time when no status is asked for. The
cursor holds each stream's position, so no session is skipped or repeated across pages, and is
bound to the filter it was issued for.
"""

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from qpay_common.domain.cursor import decode_cursor, encode_cursor
from qpay_common.domain.errors import InvalidCursor
from qpay_common.domain.session import EbarimtStatus, PaymentSession, PaymentStatus

# A position in a stream: (created_at, session_id) of the last session read there.
Position = tuple[str, str]
DONE = "done"
# Statuses an operator sees; CREATING sessions never had an invoice.
LISTED_STATUSES = tuple(status for status in PaymentStatus if status != PaymentStatus.CREATING)


@dataclass(frozen=True)
class SessionFilter:
    status: PaymentStatus | None = None
    user_id: str | None = None
    # Inclusive bounds on created_at, in domain.iso() form (which sorts as text).
    created_from: str | None = None
    created_to: str | None = None
    ebarimt_status: EbarimtStatus | None = None

    def fingerprint(self) -> str:
        plain: list[Any] = [self.status, self.user_id, self.created_from, self.created_to]
        if self.ebarimt_status is not None:  # so cursors issued before the filter existed still hold
            plain.append(self.ebarimt_status)
        return hashlib.sha256(json.dumps(plain).encode()).hexdigest()[:16]


# The attribute each index is partitioned by.
INDEX_PARTITIONS = {"by_status": "status", "by_user": "user_id", "by_ebarimt_status": "ebarimt_status"}


@dataclass(frozen=True)
class Stream:
    """One index partition, newest first: by_status for a status, by_ebarimt_status for a receipt
    status, or by_user for a user; `status` and `ebarimt_status`, if set, filter it further."""

    index: str
    partition: str
    status: PaymentStatus | None = None
    ebarimt_status: EbarimtStatus | None = None

    @property
    def name(self) -> str:
        return "user" if self.index == "by_user" else self.partition

    @property
    def partition_attribute(self) -> str:
        return INDEX_PARTITIONS[self.index]

    def selects(self, session: PaymentSession) -> bool:
        """Whether `session`, read from this stream's partition, is one the filter asks for."""
        if session.status == PaymentStatus.CREATING:
            return False
        if self.status is not None and session.status != self.status:
            return False
        return self.ebarimt_status is None or session.ebarimt_status == self.ebarimt_status


# store.SessionStore.query_index: up to `limit` sessions of a stream created within the filter's bounds,
# after `after`, newest first; and the position to continue from (None: the stream is exhausted).
IndexReader = Callable[..., tuple[list[PaymentSession], Position | None]]


def streams_for(query: SessionFilter) -> list[Stream]:
    if query.user_id is not None:
        return [Stream("by_user", query.user_id, query.status, query.ebarimt_status)]
    if query.ebarimt_status is not None:
        return [Stream("by_ebarimt_status", query.ebarimt_status.value, query.status)]
    statuses = [query.status] if query.status is not None else LISTED_STATUSES
    return [Stream("by_status", status.value) for status in statuses]


def _position(session: PaymentSession) -> Position:
    return (session.created_at, session.session_id)


def list_page(
    read: IndexReader, query: SessionFilter, *, limit: int, cursor: str | None
) -> tuple[list[PaymentSession], str | None]:
    streams = streams_for(query)
    positions = _decode(cursor, query, streams) if cursor else dict.fromkeys(s.name for s in streams)
    fetched: dict[str, tuple[list[PaymentSession], Position | None]] = {}
    for stream in streams:
        position = positions[stream.name]
        if position != DONE:
            fetched[stream.name] = read(
                stream,
                created_from=query.created_from,
                created_to=query.created_to,
                after=position,
                limit=limit,
            )
    # A stream with more to read holds sessions older than its last one read: nothing older than
    # that may be shown yet, or a later page would have to go back in time.
    horizons = [following[0] for _, following in fetched.values() if following is not None]
    bound = max(horizons) if horizons else None
    merged = sorted(
        (session for sessions, _ in fetched.values() for session in sessions),
        key=_position,
        reverse=True,
    )
    page = [session for session in merged if bound is None or session.created_at >= bound][:limit]
    shown = {session.session_id for session in page}
    for name, (sessions, following) in fetched.items():
        consumed = [session for session in sessions if session.session_id in shown]
        if len(consumed) == len(sessions):
            positions[name] = following if following is not None else DONE
        elif consumed:
            positions[name] = _position(consumed[-1])
    if all(position == DONE for position in positions.values()):
        return page, None
    return page, _encode(query, positions)


def every_session(
    read: IndexReader, query: SessionFilter, *, max_items: int, page_size: int = 100
) -> Iterator[PaymentSession]:
    """Every session the filter selects, stream by stream (unordered across streams), at most
    `max_items` of them."""
    yielded = 0
    for stream in streams_for(query):
        after: Position | None = None
        while yielded < max_items:
            sessions, after = read(
                stream,
                created_from=query.created_from,
                created_to=query.created_to,
                after=after,
                limit=min(page_size, max_items - yielded),
            )
            for session in sessions:
                yielded += 1
                yield session
            if after is None:
                break


def _encode(query: SessionFilter, positions: dict[str, Any]) -> str:
    return encode_cursor(
        {"f": query.fingerprint(), "p": {name: _plain(value) for name, value in positions.items()}}
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _decode(cursor: str, query: SessionFilter, streams: list[Stream]) -> dict[str, Any]:
    """Each stream's position; InvalidCursor unless this API issued the cursor for this filter."""
    plain = decode_cursor(cursor)
    fingerprint, raw = plain.get("f"), plain.get("p")
    names = {stream.name for stream in streams}
    if fingerprint != query.fingerprint() or not isinstance(raw, dict) or set(raw) != names:
        raise InvalidCursor()
    positions: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None or value == DONE:
            positions[name] = value
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value):
            positions[name] = (value[0], value[1])
        else:
            raise InvalidCursor()
    return positions
