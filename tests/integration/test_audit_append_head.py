"""The one-statement append: a caller's guess of the chain head is checked under the lock.

A right guess appends in one statement; a stale or forged guess, or a duplicate the caller did
not know about, must never produce a wrong chain: the append is retried against the actual head,
and after that under the lock held across read and append.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from audit import chain
from audit.canonical import GENESIS
from audit.chain import append_deliveries, chain_head
from audit.verify import verify_chain
from ledgerhook.db import create_pool
from ledgerhook.settings import Settings
from tests.conftest import CHECKPOINT_KEY
from tests.integration.audit_helpers import delivery

KEY = CHECKPOINT_KEY.encode()


async def _verified(conn: asyncpg.Connection, count: int) -> None:
    result = await verify_chain(conn, key=KEY)
    assert result.ok, result.describe()
    assert result.checked == count


async def test_right_guess_appends_and_returns_the_new_head(fresh_pool: asyncpg.Pool) -> None:
    async with fresh_pool.acquire() as conn:
        first = await append_deliveries(conn, [delivery("evt_1"), delivery("evt_2")])
        head = (first[-1].id, first[-1].row_hash)
        assert await chain_head(conn) == head
        second = await append_deliveries(conn, [delivery("evt_3"), delivery("evt_1")], head=head)
        assert [r.id for r in second] == [3, 4]
        # evt_1 was seen in an earlier batch: the caller's guess (no duplicates) was wrong.
        assert [r.duplicate_of for r in second] == [None, 1]
        await _verified(conn, 4)


@pytest.mark.parametrize(
    "guess",
    [(0, GENESIS), (1, GENESIS), (2, b"\x01" * 32), (99, b"\x02" * 32)],
    ids=["empty", "stale", "forged-hash", "ahead"],
)
async def test_wrong_guess_never_breaks_the_chain(
    fresh_pool: asyncpg.Pool, guess: tuple[int, bytes]
) -> None:
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery("evt_a"), delivery("evt_b")])
        rows = await append_deliveries(
            conn, [delivery("evt_c"), delivery("evt_c"), delivery("evt_a")], head=guess
        )
        assert [r.id for r in rows] == [3, 4, 5]
        assert [r.duplicate_of for r in rows] == [None, 3, 1]
        await _verified(conn, 5)
        assert await conn.fetchval("SELECT count(*) FROM audit.events") == 3


async def test_locked_fallback(fresh_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    # No optimistic attempt: straight to holding the lock across read and append.
    monkeypatch.setattr(chain, "_OPTIMISTIC_TRIES", 0)
    async with fresh_pool.acquire() as conn:
        await append_deliveries(conn, [delivery("evt_a")])
        rows = await append_deliveries(
            conn, [delivery("evt_b"), delivery("evt_a")], head=(0, GENESIS)
        )
        assert [(r.id, r.duplicate_of) for r in rows] == [(2, None), (3, 1)]
        await _verified(conn, 3)


async def test_failed_statement_writes_nothing(fresh_pool: asyncpg.Pool) -> None:
    async with fresh_pool.acquire() as conn:
        ok = await append_deliveries(conn, [delivery("evt_ok")])
        head = (ok[0].id, ok[0].row_hash)
        with pytest.raises(asyncpg.CheckViolationError):
            await append_deliveries(
                conn, [delivery("evt_new"), delivery("evt_x", provider="paypal")], head=head
            )
        assert await conn.fetchval("SELECT count(*) FROM audit.deliveries") == 1
        assert await conn.fetchval("SELECT count(*) FROM audit.events") == 1
        again = await append_deliveries(conn, [delivery("evt_new")], head=head)
        assert again[0].id == 2 and again[0].duplicate_of is None
        await _verified(conn, 2)


async def test_writers_with_stale_guesses_keep_one_chain(fresh_settings: Settings) -> None:
    # Each writer guesses its own last row, as the ingest appender does: with several writers
    # the guess is usually stale, which must cost retries, never a broken or gapped chain.
    pools = [await create_pool(fresh_settings, min_size=1, max_size=2) for _ in range(3)]
    try:

        async def writer(p: asyncpg.Pool, w: int) -> list[int]:
            ids: list[int] = []
            head: tuple[int, bytes] | None = None
            for i in range(15):
                batch = [delivery(f"evt_{w}_{i}_{j}") for j in range(1 + (w + i) % 3)]
                batch.append(delivery(f"evt_{(w + 1) % 6}_0_0"))  # maybe another writer's
                async with p.acquire() as conn:
                    rows = await append_deliveries(conn, batch, head=head)
                head = (rows[-1].id, rows[-1].row_hash)
                ids += [r.id for r in rows]
            return ids

        results = await asyncio.gather(*(writer(pools[w % 3], w) for w in range(6)))
        ids = sorted(i for r in results for i in r)
        assert ids == list(range(1, len(ids) + 1))
        async with pools[0].acquire() as conn:
            await _verified(conn, len(ids))
            dupes = await conn.fetchval(
                "SELECT count(*) FROM audit.deliveries WHERE duplicate_of IS NOT NULL"
            )
            assert dupes + await conn.fetchval("SELECT count(*) FROM audit.events") == len(ids)
    finally:
        for p in pools:
            await p.close()
