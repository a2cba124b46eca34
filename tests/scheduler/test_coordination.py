"""shoal.scheduler.coordination: the pure state of locks, semaphores, events, queues,
variables and datasets, and the key holds that keep futures inside them alive."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.scheduler.coordination import CoordinationState, KeyHolds, Stored


def test_semaphore_grants_up_to_max_leases() -> None:
    state = CoordinationState()
    state.semaphore("s", 2, 10.0)
    assert state.try_acquire("s", "a", "c1", now=0)
    assert state.try_acquire("s", "b", "c2", now=0)
    assert not state.try_acquire("s", "c", "c3", now=0)
    assert state.n_leases("s") == 2
    assert state.release("s", "a")
    assert not state.release("s", "a")  # twice: nothing more to give back
    assert state.try_acquire("s", "c", "c3", now=1)


def test_semaphore_size_must_agree() -> None:
    state = CoordinationState()
    state.semaphore("s", 2, 10.0)
    with pytest.raises(ValueError, match="max_leases=2"):
        state.semaphore("s", 3, 10.0)
    with pytest.raises(ValueError, match="max_leases must be >= 1"):
        state.semaphore("t", 0, 10.0)


def test_lease_expires_unless_refreshed() -> None:
    state = CoordinationState()
    state.semaphore("s", 1, 5.0)
    assert state.try_acquire("s", "a", "c1", now=0)
    assert state.refresh([("s", "a")], now=4) == []
    assert state.expire(now=8) == set()  # refreshed at 4: lives until 9
    assert state.expire(now=9) == {"s"}
    assert state.refresh([("s", "a")], now=10) == [("s", "a")]
    assert state.try_acquire("s", "b", "c2", now=10)


def test_owner_gone_frees_its_leases_only() -> None:
    state = CoordinationState()
    state.semaphore("s", 2, 5.0)
    state.semaphore("t", 1, 5.0)
    state.try_acquire("s", "a", "dead", now=0)
    state.try_acquire("s", "b", "alive", now=0)
    state.try_acquire("t", "c", "dead", now=0)
    assert state.release_owner("dead") == {"s", "t"}
    assert (state.n_leases("s"), state.n_leases("t")) == (1, 0)


def test_queue_is_fifo_bounded_and_batches() -> None:
    state = CoordinationState()
    state.queue("q", maxsize=2)
    assert state.try_put("q", Stored(b"1"))[0]
    assert state.try_put("q", Stored(b"2"))[0]
    assert not state.try_put("q", Stored(b"3"))[0]
    assert state.try_get("q", batch=3)[0] is None  # waits for three
    items, _ = state.try_get("q")
    assert items is not None and [i.value for i in items] == [b"1"]
    items, _ = state.try_get("q", batch=0)
    assert items is not None and [i.value for i in items] == [b"2"]
    assert state.try_get("q", batch=0)[0] == []
    assert state.try_get("q")[0] is None


def test_keys_held_while_stored() -> None:
    state = CoordinationState()
    _, change = state.try_put("q", Stored(b"", ("k",)))
    assert change.held == ("k",)
    assert state.set_variable("v", Stored(b"", ("k",))).held == ()  # held already
    assert state.try_get("q")[1].released == ()  # the variable still refers to it
    change = state.set_variable("v", Stored(b"", ("j",)))
    assert (change.held, change.released) == (("j",), ("k",))
    assert state.publish("d", Stored(b"", ("j",)), override=False).held == ()
    assert state.delete_variable("v").released == ()
    assert state.unpublish("d").released == ("j",)


def test_datasets_refuse_a_taken_name() -> None:
    state = CoordinationState()
    state.publish("d", Stored(b"1"), override=False)
    with pytest.raises(KeyError, match="already published"):
        state.publish("d", Stored(b"2"), override=False)
    state.publish("d", Stored(b"2"), override=True)
    assert state.datasets["d"].value == b"2"
    with pytest.raises(KeyError, match="no dataset"):
        state.unpublish("nope")


def test_events() -> None:
    state = CoordinationState()
    assert not state.is_set("e")
    state.set_event("e")
    assert state.is_set("e")
    state.clear_event("e")
    assert not state.is_set("e")


@given(
    st.lists(
        st.tuples(st.sampled_from(["hold", "drop"]), st.lists(st.sampled_from("abc"), max_size=3)),
        max_size=40,
    )
)
def test_key_holds_report_every_edge(ops: list[tuple[str, list[str]]]) -> None:
    """Reported held/released edges always match a reference count that never goes below 0."""
    holds = KeyHolds()
    reference: Counter[str] = Counter()
    held_now: set[str] = set()
    for op, keys in ops:
        if op == "hold":
            change = holds.hold(keys)
            for k in keys:
                reference[k] += 1
        else:
            change = holds.drop(keys)
            for k in keys:
                reference[k] = max(0, reference[k] - 1)
        held_now |= set(change.held)  # type: ignore[arg-type]
        held_now -= set(change.released)
        assert held_now == {k for k, n in reference.items() if n > 0}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["acquire", "release", "expire", "refresh", "owner-gone"]),
            st.integers(0, 5),
            st.integers(0, 2),
        ),
        max_size=60,
    ),
    st.integers(1, 3),
)
def test_semaphore_never_over_granted(ops: list[tuple[str, int, int]], max_leases: int) -> None:
    state = CoordinationState()
    state.semaphore("s", max_leases, 3.0)
    now = 0.0
    for op, lease, owner in ops:
        now += 1
        lease_id, owner_id = f"lease-{lease}", f"owner-{owner}"
        if op == "acquire":
            granted = state.try_acquire("s", lease_id, owner_id, now)
            assert granted == (lease_id in state.semaphores["s"].leases)
        elif op == "release":
            state.release("s", lease_id)
        elif op == "expire":
            state.expire(now)
            assert all(lease.expires > now for lease in state.semaphores["s"].leases.values())
        elif op == "refresh":
            state.refresh([("s", lease_id)], now)
        else:
            state.release_owner(owner_id)
            assert all(x.owner != owner_id for x in state.semaphores["s"].leases.values())
        assert state.n_leases("s") <= max_leases
