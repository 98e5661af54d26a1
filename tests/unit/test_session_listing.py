"""The merged listing across index partitions: newest first with no gap or repeat, whatever page
sizes DynamoDB answers with (a page can stop short at 1 MB and still have more)."""

import random

import pytest

from qpay_common.domain.listing import SessionFilter, Stream, every_session, list_page
from qpay_common.domain.session import PaymentSession, PaymentStatus

pytestmark = pytest.mark.unit


def session(number: int, status: str) -> PaymentSession:
    return PaymentSession(
        session_id=f"ps_{number:04d}",
        user_id="alice",
        status=PaymentStatus(status),
        amount=100,
        created_at=f"2026-12-01T12:{number // 60:02d}:{number % 60:02d}.000Z",
        updated_at="2026-12-01T13:00:00.000Z",
    )


class ShortPages:
    """An index reader over fixed partitions that answers `short` partitions one session a call,
    as DynamoDB does when a page reaches 1 MB, still saying more follows."""

    def __init__(self, sessions: list[PaymentSession], short: set[str]) -> None:
        self.sessions = sessions
        self.short = short
        self.reads = 0

    def __call__(self, stream: Stream, *, created_from, created_to, after, limit):
        self.reads += 1
        mine = sorted(
            (
                s
                for s in self.sessions
                if s.status.value == stream.partition
                and (after is None or (s.created_at, s.session_id) < after)
                and (created_from is None or s.created_at >= created_from)
                and (created_to is None or s.created_at <= created_to)
            ),
            key=lambda s: (s.created_at, s.session_id),
            reverse=True,
        )
        page = mine[: 1 if stream.partition in self.short else limit]
        more = len(mine) > len(page)
        return page, ((page[-1].created_at, page[-1].session_id) if more and page else None)


def read_all(reader, query: SessionFilter, limit: int) -> list[str]:
    seen, cursor = [], None
    for _ in range(200):
        page, cursor = list_page(reader, query, limit=limit, cursor=cursor)
        seen.extend(s.session_id for s in page)
        if cursor is None:
            return seen
    raise AssertionError("the listing never ended")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("limit", [1, 2, 5])
def test_short_pages_never_put_an_older_session_before_a_newer_one(seed, limit):
    shuffle = random.Random(seed)
    statuses = ["PENDING", "PROCESSED", "CANCELLED", "EXPIRED"]
    sessions = [session(number, shuffle.choice(statuses)) for number in range(40)]
    reader = ShortPages(sessions, short={"PROCESSED"})

    seen = read_all(reader, SessionFilter(), limit)

    assert seen == [s.session_id for s in sorted(sessions, key=lambda s: s.created_at, reverse=True)]


def test_a_status_reads_only_its_own_partition_and_the_time_window():
    sessions = [session(number, "PAID" if number % 2 else "PENDING") for number in range(10)]
    reader = ShortPages(sessions, short=set())
    query = SessionFilter(
        status=PaymentStatus.PAID,
        created_from="2026-12-01T12:00:03.000Z",
        created_to="2026-12-01T12:00:07.000Z",
    )

    assert read_all(reader, query, limit=10) == ["ps_0007", "ps_0005", "ps_0003"]
    assert reader.reads == 1


def test_every_session_stops_at_its_limit():
    sessions = [session(number, "PENDING") for number in range(30)]

    read = list(every_session(ShortPages(sessions, short=set()), SessionFilter(), max_items=25, page_size=10))

    assert len(read) == 25


def test_a_finished_partition_is_not_read_again():
    sessions = [session(9, "FAILED")] + [session(number, "PENDING") for number in range(9)]
    reader = ShortPages(sessions, short=set())

    first, cursor = list_page(reader, SessionFilter(), limit=3, cursor=None)
    reads = reader.reads
    second, _ = list_page(reader, SessionFilter(), limit=3, cursor=cursor)

    assert [s.session_id for s in first + second] == [f"ps_{n:04d}" for n in range(9, 3, -1)]
    # Page two reads only PENDING: every other status was exhausted on page one.
    assert reader.reads - reads == 1
