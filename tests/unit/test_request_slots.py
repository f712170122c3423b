"""RequestSlots: the cap on AWS requests in flight, where a scope's follow-up calls wait ahead of
other scopes' first calls, and a waiter that gives up never takes a slot with it."""

from __future__ import annotations

import anyio

from syncengine.concurrency import RequestSlots


async def _take(slots: RequestSlots, name: str, order: list[str], follow_up: bool, hold: anyio.Event) -> None:
    async with slots.lane(follow_up=follow_up):
        order.append(name)
        await hold.wait()


async def test_request_slots_give_a_freed_slot_to_a_follow_up_before_earlier_first_calls() -> None:
    slots = RequestSlots(1)
    order: list[str] = []
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_take, slots, "running", order, False, release)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_take, slots, "first page of scope b", order, False, release)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(_take, slots, "source servers of scope a", order, True, release)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert order == ["running", "source servers of scope a", "first page of scope b"]


async def test_request_slots_serve_each_lane_in_arrival_order() -> None:
    slots = RequestSlots(1)
    order: list[str] = []
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_take, slots, "running", order, False, release)
        await anyio.wait_all_tasks_blocked()
        for name, follow_up in (("plain 1", False), ("follow-up 1", True), ("plain 2", False), ("follow-up 2", True)):
            tg.start_soon(_take, slots, name, order, follow_up, release)
            await anyio.wait_all_tasks_blocked()
        release.set()
    assert order == ["running", "follow-up 1", "follow-up 2", "plain 1", "plain 2"]


async def test_request_slots_never_let_more_than_the_total_in_flight() -> None:
    slots = RequestSlots(2)
    in_flight: list[int] = []
    release = anyio.Event()

    async def request(follow_up: bool) -> None:
        async with slots.lane(follow_up=follow_up):
            in_flight.append(slots.in_use)
            await release.wait()

    async with anyio.create_task_group() as tg:
        for index in range(6):
            tg.start_soon(request, index % 2 == 0)
        await anyio.wait_all_tasks_blocked()
        assert slots.in_use == 2
        release.set()
    assert max(in_flight) == 2
    assert slots.in_use == 0


async def test_request_slots_lose_no_slot_to_a_cancelled_waiter() -> None:
    slots = RequestSlots(1)
    await slots.acquire()
    with anyio.move_on_after(0) as gave_up:
        await slots.acquire(follow_up=True)
    assert gave_up.cancelled_caught
    slots.release()
    assert slots.in_use == 0
    await slots.acquire()  # the slot is free again, not queued to the waiter that left
    assert slots.in_use == 1


async def test_request_slots_pass_on_a_slot_handed_to_a_waiter_being_cancelled() -> None:
    """The slot is handed over (the waiter's event set) and the waiter cancelled before it runs
    again: whether the cancellation lands in the wait or at its next checkpoint, the slot goes
    to the next waiter, not nowhere."""
    slots = RequestSlots(1)
    await slots.acquire()
    order: list[str] = []
    waiter = anyio.CancelScope()

    async def doomed() -> None:
        with waiter:
            async with slots.lane(follow_up=False):
                order.append("doomed")
                await anyio.sleep_forever()

    async def next_in_line() -> None:
        async with slots.lane(follow_up=False):
            order.append("next")

    async with anyio.create_task_group() as tg:
        tg.start_soon(doomed)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(next_in_line)
        await anyio.wait_all_tasks_blocked()
        slots.release()  # hands the slot to "doomed"...
        waiter.cancel()  # ...which is cancelled before it runs again
    assert order[-1] == "next"
    assert slots.in_use == 0
