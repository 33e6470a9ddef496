"""The event bus (`taskstate.core.bus`): bounded subscribers, dropped when they fall behind,
never holding up the others; listeners; what is forwarded to other instances."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from taskstate.core.bus import TOKEN_REVOKED, Event, EventBus, Subscription


def transition(seq: int, task_id: str = "t1") -> Event:
    return Event.of({"type": "transition", "seq": seq, "task_id": task_id, "from": None, "to": "queued"})


def progress(task_id: str = "t1") -> Event:
    return Event.of({"type": "progress", "task_id": task_id, "progress": 50})


def drain(subscription: Subscription) -> list[Event]:
    return subscription.take_ready()


def test_a_full_subscriber_is_dropped_with_overflowed_and_the_others_are_not() -> None:
    bus = EventBus(queue_size=2)
    slow, fast = bus.subscribe(), bus.subscribe()
    received = []
    for seq in range(1, 6):
        bus.publish(transition(seq))
        received += drain(fast)  # the fast one keeps up, the slow one never reads

    assert slow.overflowed
    assert [e.seq for e in drain(slow)] == [1, 2], "the slow one keeps what it had, and nothing after"
    assert not fast.overflowed
    assert [e.seq for e in received] == [1, 2, 3, 4, 5]
    assert bus.subscriber_count == 1, "the dropped subscriber is no longer on the bus"
    bus.publish(transition(6))
    assert drain(slow) == []
    assert [e.seq for e in drain(fast)] == [6]


def test_one_publication_never_overflows_a_subscriber_that_keeps_up() -> None:
    """A commit's burst arrives as one publication: the subscriber had no chance to read."""
    bus = EventBus(queue_size=2)
    subscription = bus.subscribe()
    bus.publish_many([transition(seq) for seq in range(1, 11)])
    assert not subscription.overflowed
    assert [e.seq for e in drain(subscription)] == list(range(1, 11))


def test_a_subscription_for_one_task_gets_only_that_tasks_events() -> None:
    bus = EventBus()
    mine = bus.subscribe(task_id="t1")
    everything = bus.subscribe()
    bus.publish_many([transition(1, "t1"), transition(2, "t2"), progress("t1"), progress("t2")])
    assert [(e.type, e.task_id) for e in drain(mine)] == [("transition", "t1"), ("progress", "t1")]
    assert len(drain(everything)) == 4


def test_a_closed_subscription_receives_nothing() -> None:
    bus = EventBus()
    with bus.subscribe() as subscription:
        bus.publish(transition(1))
    bus.publish(transition(2))
    assert [e.seq for e in drain(subscription)] == [1]
    assert bus.subscriber_count == 0


def test_internal_events_reach_listeners_but_never_a_subscriber() -> None:
    bus = EventBus()
    heard: list[str] = []
    bus.add_listener(lambda event: heard.append(event.type))
    subscription = bus.subscribe()
    revoked = Event.of({"type": TOKEN_REVOKED, "task_id": "", "token_id": "x"})
    bus.publish_many([revoked, transition(1)])
    assert heard == [TOKEN_REVOKED, "transition"]
    assert [e.type for e in drain(subscription)] == ["transition"]


def test_live_events_are_forwarded_to_other_instances_and_transitions_are_not() -> None:
    """Transitions travel to the other instances through the database (feed.py); live events
    through the forwarder, unless they came from another instance."""
    bus = EventBus()
    forwarded: list[Any] = []
    bus.forwarder = lambda event: forwarded.append((event.type, event.task_id))
    bus.publish(transition(1))
    bus.publish(progress("t1"))
    bus.publish(progress("t2"), forward=False)
    assert forwarded == [("progress", "t1")]


def test_a_failing_listener_does_not_stop_delivery(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    heard: list[int | None] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(lambda event: heard.append(event.seq))
    subscription = bus.subscribe()
    with caplog.at_level(logging.ERROR, logger="taskstate.core.bus"):
        bus.publish(transition(1))
    assert heard == [1]
    assert [e.seq for e in drain(subscription)] == [1]
    assert "event listener failed" in caplog.text


def test_an_event_is_serialised_once_and_only_when_read() -> None:
    event = transition(7)
    assert event._text is None
    text = event.text
    assert '"seq":7' in text
    assert event.text is text


async def test_a_waiting_reader_is_woken_in_order_and_one_cancelled_while_waiting_loses_nothing() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    reading = asyncio.ensure_future(subscription.get())
    await asyncio.sleep(0)
    assert not reading.done()
    bus.publish_many([transition(1), transition(2)])
    assert (await asyncio.wait_for(reading, 1)).seq == 1
    assert (await asyncio.wait_for(subscription.get(), 1)).seq == 2
    gave_up = asyncio.ensure_future(subscription.get())
    await asyncio.sleep(0)
    gave_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gave_up
    bus.publish(transition(3))
    assert subscription.pending == 1
    assert (await asyncio.wait_for(subscription.get(), 1)).seq == 3
