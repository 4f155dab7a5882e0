"""edge.playlists.pacing: round steps run at most `batch` per loop turn, first come first served,
each once, none waiting beyond its place in the queue; and the asyncio gate keeps to it."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.playlists.pacing import Gate, Turns

# An operation: ("arrive",), ("turn",), or ("leave", index of a waiting key).
ops = st.lists(
    st.one_of(st.just(("arrive",)), st.just(("turn",)), st.tuples(st.just("leave"), st.integers(0, 50))),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(batch=st.integers(1, 8), script=ops)
def test_turns_admit_each_once_in_order_at_most_batch_per_turn_within_their_place(batch, script):
    turns: Turns[int] = Turns(batch)
    admitted: list[int] = []
    left: set[int] = set()
    arrived: list[int] = []
    this_turn = 0
    # For each waiting key: how many turns it may still wait (its place in the queue, by batches).
    bound: dict[int, int] = {}
    for op in script:
        if op[0] == "arrive":
            key = len(arrived)
            arrived.append(key)
            if turns.arrive(key):
                admitted.append(key)
                this_turn += 1
            else:
                bound[key] = len(turns.waiting) // batch + 1  # whole batches ahead of it, then its own
        elif op[0] == "turn":
            now = turns.next_turn()
            admitted.extend(now)
            this_turn = len(now)
            for key in now:
                bound.pop(key)
            for key in bound:
                bound[key] -= 1
                assert bound[key] > 0, f"key {key} waited beyond its place"
        elif turns.waiting:
            key = turns.waiting[op[1] % len(turns.waiting)]
            turns.leave(key)
            left.add(key)
            bound.pop(key)
            # Those behind it moved up: their bound stays an upper bound.
        assert this_turn <= batch
        assert len(admitted) == len(set(admitted)), "a key admitted twice"
        assert not set(admitted) & set(turns.waiting), "admitted and still waiting"
    assert admitted == [k for k in arrived if k in set(admitted)], "not first come, first served"
    assert set(admitted) | left | set(turns.waiting) == set(arrived), "a key lost"


def test_batch_below_one_is_refused():
    with pytest.raises(ValueError):
        Turns(0)


def test_gate_runs_at_most_a_batch_per_loop_turn_and_lets_other_work_in_between():
    async def scenario() -> tuple[list[int], list[str]]:
        gate = Gate(batch=3)
        turn_of: list[int] = []
        events: list[str] = []
        loop_turn = [0]

        def tick() -> None:  # counts loop turns, like a player's socket read would be served
            loop_turn[0] += 1
            events.append("player")
            if loop_turn[0] < 20:
                asyncio.get_running_loop().call_soon(tick)

        async def round_step() -> None:
            await gate.turn()
            turn_of.append(loop_turn[0])
            events.append("round")

        asyncio.get_running_loop().call_soon(tick)
        await asyncio.gather(*(round_step() for _ in range(10)))
        return turn_of, events

    turn_of, events = asyncio.run(scenario())
    assert len(turn_of) == 10
    per_turn = {t: turn_of.count(t) for t in set(turn_of)}
    assert max(per_turn.values()) <= 3, per_turn
    run, longest = 0, 0  # rounds run back to back, without the other work getting a turn
    for event in events:
        run = run + 1 if event == "round" else 0
        longest = max(longest, run)
    assert longest <= 3 + 3, events  # at most the end of one turn's batch and the start of the next


def test_a_cancelled_waiter_leaves_the_queue():
    async def scenario() -> list[int]:
        gate = Gate(batch=1)
        order: list[int] = []

        async def step(index: int) -> None:
            await gate.turn()
            order.append(index)

        tasks = [asyncio.ensure_future(step(i)) for i in range(3)]
        await asyncio.sleep(0)  # all three arrived in one turn: the first runs, the others wait
        tasks[1].cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 1)
        assert not gate._turns.waiting
        return order

    assert asyncio.run(scenario()) == [0, 2]
