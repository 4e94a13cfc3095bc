"""The poll slots: an endpoint's fair share, borrowing while nobody else waits, the reserve a
hanging endpoint leaves, the order of grants and a waiter cancelled."""

from __future__ import annotations

import asyncio

import pytest

from exporter.polling.slots import PollSlots

pytestmark = pytest.mark.smoke


async def _take(slots: PollSlots, endpoint: str, n: int) -> None:
    for _ in range(n):
        await asyncio.wait_for(slots.acquire(endpoint), 1)


async def _waiting(slots: PollSlots, endpoint: str) -> asyncio.Task[None]:
    task = asyncio.ensure_future(slots.acquire(endpoint))
    await asyncio.sleep(0)
    assert not task.done()
    return task


def test_one_endpoint_alone_borrows_all_but_the_reserve() -> None:
    async def main() -> None:
        slots = PollSlots(64)
        assert (slots.share, slots.ceiling) == (32, 56)
        await _take(slots, "a", 56)
        assert not slots.try_acquire("a")  # the reserve: 8 slots for another endpoint
        await _take(slots, "b", 8)  # ... which gets them at once
        assert not slots.try_acquire("b")  # every slot taken

    asyncio.run(main())


def test_a_waiting_endpoint_stops_the_borrowing_and_gets_the_slots_back() -> None:
    async def main() -> None:
        slots = PollSlots(8)  # share 4, ceiling 7
        await _take(slots, "a", 7)
        await _take(slots, "b", 1)
        b2 = await _waiting(slots, "b")
        slots.release("a")  # a is above its share and b waits: the slot goes to b
        await asyncio.sleep(0)
        assert b2.done()
        assert (slots.held("a"), slots.held("b")) == (6, 2)
        a_again = await _waiting(slots, "a")  # every slot taken
        slots.release("b")  # nobody else waits: a borrows it
        await asyncio.sleep(0)
        assert a_again.done()
        assert slots.held("a") == 7
        b3 = await _waiting(slots, "b")
        slots.release("a")
        await asyncio.sleep(0)
        assert b3.done()
        assert (slots.held("a"), slots.held("b")) == (6, 2)

    asyncio.run(main())


def test_an_endpoint_at_its_limit_does_not_hold_up_the_others() -> None:
    async def main() -> None:
        slots = PollSlots(2)  # share 1, ceiling 1: the smallest case
        await _take(slots, "a", 1)
        a2 = await _waiting(slots, "a")
        await _take(slots, "b", 1)  # behind a's waiter, yet granted
        assert not a2.done()
        slots.release("a")
        await asyncio.sleep(0)
        assert a2.done()

    asyncio.run(main())


def test_grants_follow_the_order_of_asking() -> None:
    async def main() -> None:
        slots = PollSlots(4)  # share 2, ceiling 3
        await _take(slots, "a", 2)
        await _take(slots, "b", 2)
        order: list[str] = []

        async def ask(endpoint: str) -> None:
            await slots.acquire(endpoint)
            order.append(endpoint)

        tasks = [asyncio.ensure_future(ask(e)) for e in ("b", "a", "b")]
        await asyncio.sleep(0)
        for endpoint in ("b", "a", "b"):
            slots.release(endpoint)
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert order == ["b", "a", "b"]

    asyncio.run(main())


def test_a_cancelled_waiter_takes_nothing_and_lets_others_borrow() -> None:
    async def main() -> None:
        slots = PollSlots(8)
        await _take(slots, "a", 7)
        await _take(slots, "b", 1)
        b_more = await _waiting(slots, "b")
        b_more.cancel()
        with pytest.raises(asyncio.CancelledError):
            await b_more
        slots.release("b")
        assert slots.try_acquire("a") is False  # at the ceiling (7 of 8)
        assert slots.try_acquire("b")  # nothing leaked: the slot is free

    asyncio.run(main())


def test_a_timed_out_wait_leaves_the_count_right() -> None:
    async def main() -> None:
        slots = PollSlots(2)
        await _take(slots, "a", 1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slots.acquire("a"), 0.01)
        slots.release("a")
        await _take(slots, "a", 1)
        await _take(slots, "b", 1)
        assert slots.held("a") == slots.held("b") == 1

    asyncio.run(main())
