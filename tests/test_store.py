"""The store (`taskstate.core.store`): the real store against a model of CONTRACT §1, on
SQLite and PostgreSQL.

A hypothesis state machine creates tasks and asks for random transitions (any
target, any task, with and without a worker's guard, plus claims). A model
predicts every answer: `applied` for a table edge, `noop` for the state the
task is already in, `refused` out of a terminal state, `InvalidTransition`
otherwise. After every step the database must agree with the model, and the
`transitions` table must be a list of table paths with a gap-free `seq`.

Then the same invariants under concurrency: coroutines (on one store, and on
two stores with their own engines) hammer the same few tasks at once; and grouped
transitions (one writer batch) answer what one-by-one transitions answer.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskstate.core.bus import EventBus, Subscription
from taskstate.core.creation import NewTask
from taskstate.core.db import Database, open_database
from taskstate.core.errors import InvalidTransition, NotFound
from taskstate.core.migrations import upgrade_to_head
from taskstate.core.statements import group_transition_statement
from taskstate.core.states import State, on_entry
from taskstate.core.store import Guard, Outcome, Store, TransitionResult
from tests.support.contract import (
    CONTRACT_STATES,
    CONTRACT_TABLE,
    CONTRACT_TERMINAL,
    assert_seqs_gap_free,
    assert_valid_paths,
)
from tests.support.databases import fresh_pg_database
from tests.support.readers import read_all

T = TypeVar("T")

WORKERS = ("w1", "w2")
ALL_STATES = [State(s) for s in CONTRACT_STATES]


# -- the model ---------------------------------------------------------------------------------


def _shortest_paths() -> dict[str, list[str]]:
    """From `queued`, the shortest walk of table edges to every state (breadth first)."""
    paths = {"queued": ["queued"]}
    frontier = ["queued"]
    while frontier:
        nxt = []
        for state in frontier:
            for to in sorted(CONTRACT_TABLE[state]):
                if to not in paths:
                    paths[to] = [*paths[state], to]
                    nxt.append(to)
        frontier = nxt
    assert set(paths) == set(CONTRACT_STATES)
    return paths


PATH_TO = _shortest_paths()


def predict(current: str, to: str) -> Outcome | type[InvalidTransition]:
    if current == to:
        return Outcome.NOOP
    if current in CONTRACT_TERMINAL:
        return Outcome.REFUSED
    if to in CONTRACT_TABLE[current]:
        return Outcome.APPLIED
    return InvalidTransition


def _reflect(connection: sa.Connection, metadata: sa.MetaData) -> None:
    """The tables, as the harness needs them: their rows, not their indexes. SQLite's
    reflection skips (and warns of) the expression index of idempotency keys (0006)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        metadata.reflect(connection)


class Harness:
    """An event loop and a database for a hypothesis run, reset to its migrated state per example.

    Between examples every table is emptied and given back the rows the migrations
    put there (e.g. counters), so every example starts from a fresh database, its
    `seq` from 1, and a failing example cannot leave rows behind that make a later
    one fail. (A new PostgreSQL database per example costs ~2 s; this costs ms.)
    """

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = open_database(url)
        self.run(upgrade_to_head(self.db.writer))
        self.snapshot: dict[str, list[dict[str, Any]]] = self.run(self._snapshot())
        self.store: Store | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout=30))

    async def _snapshot(self) -> dict[str, list[dict[str, Any]]]:
        metadata = sa.MetaData()
        async with self.db.writer.connect() as conn:
            await conn.run_sync(_reflect, metadata)
            self.tables = [t for t in metadata.sorted_tables if t.name != "alembic_version"]
            if self.db.is_sqlite:
                self.sequences: list[str] = []
            else:
                query = "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
                self.sequences = list((await conn.execute(sa.text(query))).scalars())
            return {
                t.name: [dict(r) for r in (await conn.execute(sa.select(t))).mappings().all()]
                for t in self.tables
            }

    async def _reset(self) -> None:
        async with self.db.writer.begin() as conn:
            for table in reversed(self.tables):
                await conn.execute(sa.delete(table))
            for sequence in self.sequences:
                await conn.execute(sa.text(f'ALTER SEQUENCE "{sequence}" RESTART'))
            for table in self.tables:
                if self.snapshot[table.name]:
                    await conn.execute(sa.insert(table), self.snapshot[table.name])

    async def _start(self) -> Store:
        await self._reset()
        store = Store(self.db, EventBus(queue_size=100_000))
        store.start()
        return store

    def new_example(self) -> tuple[Database, Store]:
        self.store = self.run(self._start())
        return self.db, self.store

    def end_example(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            self.run(store.close())

    def close(self) -> None:
        try:
            self.end_example()
            self.run(self.db.dispose())
        finally:
            self.loop.close()


class StoreMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.h = harness
        self.db, self.store = harness.new_example()
        self.model: dict[str, str] = {}
        self.worker: dict[str, str | None] = {}
        self.created_at: dict[str, datetime] = {}
        self.rows: Counter[str] = Counter()
        self.seen_seq = self.h.run(self.store.reads.latest_seq())
        assert self.seen_seq == 0, "a fresh database already has transitions"
        self.sub: Subscription = self.store.bus.subscribe()

    # -- helpers ---------------------------------------------------------------------------

    def check_answer(
        self,
        task_id: str,
        to: State,
        expected: set[Outcome | type[InvalidTransition]],
        guard: Guard | None = None,
        hint: State | None = None,
    ) -> None:
        """Ask the store; `hint` is a caller's belief about the state (`expect_from`), right or wrong."""
        before = self.model[task_id]
        try:
            result: TransitionResult | None = self.h.run(
                self.store.transition(
                    task_id, to, reason="model", actor="test", guard=guard, expect_from=hint
                )
            )
            got: Outcome | type[InvalidTransition] = result.outcome
        except InvalidTransition as exc:
            result = None
            got = InvalidTransition
            assert (exc.from_state, exc.to_state) == (before, to.value)
        assert got in expected, (
            f"{before} -> {to.value} (guard {guard}, expect_from {hint}): got {got}, expected {expected}"
        )
        if result is not None:
            assert result.from_state == before
            assert result.to_state == to.value
        if got is Outcome.APPLIED:
            assert result is not None and result.applied
            assert isinstance(result.seq, int) and result.seq > self.seen_seq
            assert result.task["state"] == to.value
            assert result.task["is_terminal"] is (to.value in CONTRACT_TERMINAL)
            self.model[task_id] = to.value
            self.rows[task_id] += 1
            if on_entry(to).releases_worker:  # back in the queue, no worker holds it
                self.worker[task_id] = None
                assert result.task["worker_id"] is None
        else:
            assert result is None or result.seq is None
        # (The invariant then checks the database: every row, and every task's state.)

    # -- rules -----------------------------------------------------------------------------

    def _create(self, n: int) -> list[str]:
        new = [NewTask(type="demo.noop", params={}, name=f"model {i}") for i in range(n)]
        results = self.h.run(self.store.create_tasks(new, actor="test"))
        assert [r.task["id"] for r in results] == [t.id for t in new]
        for result in results:
            assert result.created
            assert result.task["state"] == "queued"
            task_id = result.task["id"]
            self.model[task_id] = "queued"
            self.worker[task_id] = None
            self.created_at[task_id] = datetime.fromisoformat(result.task["created_at"])
            self.rows[task_id] = 1
        return [t.id for t in new]

    @initialize(target=tasks)
    def create_first(self) -> Any:
        return multiple(*self._create(3))

    @rule(target=tasks, n=st.integers(1, 3))
    def create(self, n: int) -> Any:
        return multiple(*self._create(n))

    @rule(task_id=tasks, to=st.sampled_from(ALL_STATES), unknown=st.integers(0, 9))
    def request_any(self, task_id: str, to: State, unknown: int) -> None:
        self.check_answer(task_id, to, {predict(self.model[task_id], to.value)})
        if unknown == 0:  # now and then, a task that does not exist
            with pytest.raises(NotFound):
                self.h.run(self.store.transition(str(uuid.uuid4()), to, reason="x", actor="test"))

    @rule(target=tasks, via=st.sampled_from(ALL_STATES), to=st.sampled_from(ALL_STATES))
    def reach_then_request(self, via: State, to: State) -> Any:
        """A new task walked to `via` along table edges, then asked for `to`: every pair is reachable."""
        [task_id] = self._create(1)
        for step in PATH_TO[via.value][1:]:
            self.check_answer(task_id, State(step), {Outcome.APPLIED})
        assert self.model[task_id] == via.value
        self.check_answer(task_id, to, {predict(via.value, to.value)})
        return task_id

    @rule(task_id=tasks, data=st.data(), steps=st.integers(1, 6))
    def walk(self, task_id: str, data: st.DataObject, steps: int) -> None:
        """Walk the table, preferring edges that do not end the task (so that deep states are reached)."""
        for _ in range(steps):
            current = self.model[task_id]
            onward = sorted(CONTRACT_TABLE[current] - CONTRACT_TERMINAL)
            ending = sorted(CONTRACT_TABLE[current] & CONTRACT_TERMINAL)
            if not onward and not ending:  # terminal: poke it once more, then stop
                to = State(data.draw(st.sampled_from(CONTRACT_STATES)))
                self.check_answer(task_id, to, {predict(current, to.value)})
                return
            if onward and data.draw(st.integers(0, 9)) < 8:
                to = State(data.draw(st.sampled_from(onward)))
            else:
                to = State(data.draw(st.sampled_from(ending or onward)))
            self.check_answer(task_id, to, {predict(current, to.value)})

    @rule(task_id=tasks, to=st.sampled_from(ALL_STATES), hint=st.sampled_from(ALL_STATES))
    def request_with_belief(self, task_id: str, to: State, hint: State) -> None:
        """`expect_from` is only a hint: a wrong belief changes nothing about the answer."""
        self.check_answer(task_id, to, {predict(self.model[task_id], to.value)}, hint=hint)

    @rule(
        task_id=tasks,
        worker=st.sampled_from(WORKERS),
        to=st.sampled_from(ALL_STATES),
        hint=st.none() | st.sampled_from(ALL_STATES),
    )
    def request_guarded(self, task_id: str, worker: str, to: State, hint: State | None) -> None:
        current = self.model[task_id]
        plain = predict(current, to.value)
        if self.worker[task_id] == worker:
            expected = {plain}
        else:
            # Another worker's guard must never move the task; which refusal it gets is free.
            expected = {Outcome.NOT_OWNER}
            if plain is not Outcome.APPLIED:
                expected.add(plain)
        self.check_answer(task_id, to, expected, guard=Guard(worker, 1), hint=hint)

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 4))
    def claim(self, worker: str, limit: int) -> None:
        queued = {t for t, s in self.model.items() if s == "queued"}
        claimed = self.h.run(self.store.claim(worker, limit))
        ids = [r["id"] for r in claimed]
        assert len(ids) == len(set(ids))
        assert set(ids) <= queued, "claimed a task that was not queued"
        assert len(ids) == min(limit, len(queued))
        for row in claimed:
            assert row["state"] == "preparing"
            assert row["worker_id"] == worker
        left = queued - set(ids)
        if ids and left:
            # Oldest first (all priorities are equal here).
            assert max(self.created_at[t] for t in ids) <= min(self.created_at[t] for t in left)
        for task_id in ids:
            self.model[task_id] = "preparing"
            self.worker[task_id] = worker
            self.rows[task_id] += 1

    # -- invariants ------------------------------------------------------------------------

    @precondition(lambda self: bool(self.model))
    @invariant()
    def database_matches_model(self) -> None:
        rows, states = self.h.run(read_all(self.db))
        assert_seqs_gap_free(rows, rows[-1]["seq"] if rows else 0)
        mine = {t: states[t]["state"] for t in self.model}
        assert mine == self.model
        for task_id in self.model:
            assert states[task_id]["worker_id"] == self.worker[task_id]
            assert states[task_id]["attempt"] == 1
        # Every task's rows (older examples' too) are a path of the table.
        assert_valid_paths(rows, {t: s["state"] for t, s in states.items()})
        counts = Counter(r["task_id"] for r in rows if r["task_id"] in self.model)
        assert counts == self.rows, "a transition row without an applied transition, or the reverse"
        # The bus carried exactly the new rows, in seq order, after their commit.
        published = []
        for event in self.sub.take_ready():
            if event.type == "transition":
                p = event.payload
                published.append((p["seq"], p["task_id"], p["from"], p["to"]))
        new_rows = [
            (r["seq"], r["task_id"], r["from_state"], r["to_state"]) for r in rows if r["seq"] > self.seen_seq
        ]
        assert not self.sub.overflowed
        assert published == new_rows
        if rows:
            self.seen_seq = rows[-1]["seq"]

    def teardown(self) -> None:
        try:
            if self.model:
                self.database_matches_model()
            rows, _ = self.h.run(read_all(self.db))
            assert self.h.run(self.store.reads.latest_seq()) == (rows[-1]["seq"] if rows else 0)
        finally:
            self.sub.close()
            self.h.end_example()


#: Shrinking a failing run replays hundreds of examples against a real database and
#: would blow the test's time budget; the failing steps are printed unshrunk unless
#: TASKSTATE_TEST_SHRINK=1 (then allow minutes).
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target] + (
    [Phase.shrink] if os.environ.get("TASKSTATE_TEST_SHRINK") == "1" else []
)


def _run_machine(url: str) -> None:
    harness = Harness(url)
    try:
        run_state_machine_as_test(
            lambda: StoreMachine(harness),
            settings=settings(
                max_examples=30,
                stateful_step_count=30,
                deadline=None,
                database=None,
                phases=PHASES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        harness.close()


@pytest.mark.timeout(300)  # ~10-25 s on an idle machine; a busy CI box can be several times slower
def test_store_follows_the_model(database_url: str) -> None:
    _run_machine(database_url)


# -- concurrency -------------------------------------------------------------------------------


async def _open_store(url: str, *, migrate: bool) -> tuple[Database, Store]:
    db = open_database(url)
    if migrate:
        await upgrade_to_head(db.writer)
    store = Store(db, EventBus(queue_size=100_000))
    store.start()
    return db, store


@pytest.mark.parametrize("n_stores", [1, 2], ids=["one-store", "two-stores"])
async def test_concurrent_transitions_keep_paths_and_seq(database_url: str, n_stores: int) -> None:
    """8 coroutines (over one store, or two stores with their own engines) on the same 4 tasks."""
    opened = [await _open_store(database_url, migrate=True)]
    for _ in range(n_stores - 1):
        opened.append(await _open_store(database_url, migrate=False))
    stores = [s for _, s in opened]
    try:
        ids: list[str] = []

        async def create(store: Store, n: int) -> None:
            created = await store.create_tasks(
                [NewTask(type="demo.noop", params={}, name=f"hammer {len(ids) + i}") for i in range(n)],
                actor="test",
            )
            ids.extend(c.task["id"] for c in created)

        await create(stores[0], 4)
        results: list[tuple[str, str, TransitionResult | InvalidTransition]] = []

        async def hammer(n: int) -> None:
            rng = random.Random(n)
            store = stores[n % len(stores)]
            for _ in range(60):
                # Everyone works on the 4 newest tasks; a terminal one is replaced now and then.
                task_id = rng.choice(ids[-4:])
                row = await store.reads.get_task_row(task_id)
                assert row is not None
                onward = sorted(CONTRACT_TABLE[row["state"]] - CONTRACT_TERMINAL)
                dice = rng.random()
                if not onward and dice < 0.3:
                    await create(store, 1)
                    continue
                if onward and dice < 0.75:
                    to = State(rng.choice(onward))  # deeper into the table
                elif dice < 0.85:
                    to = State(rng.choice(sorted(CONTRACT_TERMINAL)))
                else:
                    to = State(rng.choice(CONTRACT_STATES))
                try:
                    result: TransitionResult | InvalidTransition = await store.transition(
                        task_id, to, reason=f"hammer {n}", actor=f"hammer:{n}"
                    )
                except InvalidTransition as exc:
                    result = exc
                results.append((task_id, to.value, result))
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        done = asyncio.Event()
        looks: list[tuple[int, int]] = []

        async def watch() -> None:
            """A reader never sees a hole: whenever it looks, the seqs are exactly 1..max."""
            query = sa.text("SELECT count(*), coalesce(max(seq), 0) FROM transitions")
            while not done.is_set():
                async with opened[-1][0].reader.connect() as conn:
                    count, newest = (await conn.execute(query)).one()
                looks.append((count, newest))
                assert count == newest, f"a reader saw seq {newest} with only {count} rows: a hole"
                await asyncio.sleep(0.002)

        async def hammers() -> None:
            try:
                await asyncio.gather(*(hammer(n) for n in range(8)))
            finally:
                done.set()

        async with asyncio.timeout(60):
            await asyncio.gather(hammers(), watch())
        assert len({newest for _, newest in looks}) > 5, "the watcher saw too little"

        db = opened[0][0]
        rows, all_tasks = await read_all(db)
        states = {t: s["state"] for t, s in all_tasks.items()}
        assert set(states) == set(ids)
        assert_seqs_gap_free(rows, await stores[0].reads.latest_seq())
        paths = assert_valid_paths(rows, states)

        by_seq = {r["seq"]: r for r in rows}
        applied = 0
        for task_id, to, result in results:
            if isinstance(result, InvalidTransition):
                assert result.to_state == to
                assert result.to_state not in CONTRACT_TABLE[result.from_state]
                assert result.from_state not in CONTRACT_TERMINAL, "a terminal task answered invalid"
                continue
            if result.outcome is Outcome.APPLIED:
                applied += 1
                row = by_seq[result.seq]
                assert (row["task_id"], row["from_state"], row["to_state"]) == (
                    task_id,
                    result.from_state,
                    to,
                )
                assert to in CONTRACT_TABLE[result.from_state]
            elif result.outcome is Outcome.NOOP:
                assert result.from_state == to
            elif result.outcome is Outcome.REFUSED:
                assert result.from_state in CONTRACT_TERMINAL
                # A terminal state never changes.
                assert states[task_id] == result.from_state
            else:
                pytest.fail(f"unexpected outcome {result.outcome} without a guard")
        assert applied == len(rows) - len(ids), "rows and applied transitions disagree"
        # The hammering did something: many transitions, and tasks deep into the table.
        outcomes = Counter(
            "invalid" if isinstance(r, InvalidTransition) else r.outcome.value for _, _, r in results
        )
        assert applied >= 100, outcomes
        assert max(len(p) for p in paths.values()) >= 5, paths
    finally:
        for db, store in opened:
            await store.close()
            await db.dispose()


# -- group commit: grouped transitions answer what one-by-one transitions answer ---------------


async def _grouped_round(
    store: Store, requests: list[tuple[str, State, Guard | None, State | None]], *, together: bool
) -> list[tuple[str, str | None, str | None] | str]:
    """Run `requests` in order: all submitted at once (one writer batch), or each awaited."""

    async def one(task_id: str, to: State, guard: Guard | None, hint: State | None) -> TransitionResult:
        return await store.transition(
            task_id,
            to,
            reason="grouped",
            actor="test",
            guard=guard,
            fields={"message": to.value},
            expect_from=hint,
        )

    if together:
        answers: list[Any] = await asyncio.gather(*(one(*r) for r in requests), return_exceptions=True)
    else:
        answers = []
        for r in requests:
            try:
                answers.append(await one(*r))
            except Exception as exc:
                answers.append(exc)
    return [
        type(a).__name__
        if isinstance(a, Exception)
        else (a.outcome.value, a.from_state, a.record and a.record.to_state)
        for a in answers
    ]


async def test_grouped_transitions_answer_what_one_by_one_transitions_answer(
    tmp_path: Any, database_url: str
) -> None:
    """The writer runs neighbouring `transition()`s of distinct tasks as one UPDATE per kind.

    The same random requests (right and wrong `expect_from`, right and wrong guards,
    terminal and unknown tasks, illegal targets, the same task twice in a batch) go once
    in a single batch and once one by one, each on its own database; every answer, every
    final row and every transition row must be the same.
    """
    if database_url.startswith("sqlite"):
        urls = [database_url, f"sqlite+aiosqlite:///{tmp_path / 'one-by-one.db'}"]
        second: Any = None
    else:
        second = fresh_pg_database()
        urls = [database_url, await second.__aenter__()]
    opened = [await _open_store(url, migrate=True) for url in urls]
    try:
        rng = random.Random(7)
        ids = [str(uuid.uuid4()) for _ in range(40)]
        for _, store in opened:
            await store.create_tasks(
                [NewTask(id=i, type="demo.noop", params={}, name=i[:8]) for i in ids], actor="t"
            )
            # The same spread of states on both: claimed by w1 (attempt 1), moved along the table.
            claimed = [row["id"] for row in await store.claim("w1", 30)]
            assert claimed == ids[:30]
            for n, task_id in enumerate(ids[:30]):
                for to in [State.RUNNING, State.COLLECTING, State.COMPLETED, State.CANCELLED][: n % 5]:
                    await store.transition(task_id, to, reason="setup", actor="t")
        answers: list[list[Any]] = [[], []]
        built = group_transition_statement.cache_info()
        for _ in range(8):
            fresh = [str(uuid.uuid4()) for _ in range(8)]
            ids += fresh
            for _, store in opened:
                await store.create_tasks(
                    [NewTask(id=i, type="demo.noop", params={}, name="x") for i in fresh], actor="t"
                )
                await store.claim("w1", 4)
            _, now = await read_all(opened[1][0])
            requests: list[tuple[str, State, Guard | None, State | None]] = []
            for _ in range(40):
                task_id = rng.choice([*ids, "no-such-task"])
                current = now[task_id] if task_id in now else {"state": "queued", "worker_id": None}
                onward = sorted(CONTRACT_TABLE[current["state"]])
                if onward and rng.random() < 0.7:  # what a worker asks: the next state, knowing this one
                    to, hint = State(rng.choice(onward)), State(current["state"])
                    guard = Guard(current["worker_id"], 1) if current["worker_id"] else None
                    if guard is not None and rng.random() < 0.3:  # a worker that lost the task
                        guard = rng.choice([Guard("w2", 1), Guard("w1", 2)])
                else:  # anything at all, often with a right belief about the state
                    to = State(rng.choice([*onward, *CONTRACT_STATES]))
                    hint = State(current["state"]) if rng.random() < 0.5 else rng.choice([None, *ALL_STATES])
                    guard = rng.choice([None, Guard("w1", 1), Guard("w2", 1), Guard("w1", 2)])
                requests.append((task_id, to, guard, hint))
            for side, (_, store) in enumerate(opened):
                answers[side].append(await _grouped_round(store, requests, together=side == 0))
        assert answers[0] == answers[1]
        outcomes = Counter(a if isinstance(a, str) else a[0] for r in answers[0] for a in r)
        assert outcomes["applied"] > 20 and outcomes["refused"] > 5 and outcomes["not_owner"] > 5, outcomes
        assert outcomes["InvalidTransition"] > 2 and outcomes["NotFound"] > 0, outcomes
        used = group_transition_statement.cache_info()
        assert used.hits + used.misses - built.hits - built.misses >= 8, "no multi-row UPDATE ran"
        grouped_batches, _ = opened[0][1].writer_stats
        one_by_one_batches, _ = opened[1][1].writer_stats
        assert grouped_batches < one_by_one_batches / 3, "the first side did not write in batches"

        def comparable(rows: list[dict[str, Any]], all_tasks: dict[str, dict[str, Any]]) -> Any:
            paths = defaultdict(list)
            for row in rows:
                paths[row["task_id"]].append((row["from_state"], row["to_state"]))
            return dict(paths), all_tasks

        seen = [comparable(*await read_all(db)) for db, _ in opened]
        assert seen[0] == seen[1]
        # What each kind of transition sets besides the state: started_at, finished_at,
        # progress 100 on completion, the questions cleared at the end.
        columns = sa.text(
            "SELECT id, state, message, progress, started_at IS NOT NULL, finished_at IS NOT NULL, "
            "pending_questions IS NULL, last_reason FROM tasks ORDER BY id"
        )
        rows_of = []
        for db, _ in opened:
            async with db.reader.connect() as conn:
                rows_of.append([tuple(r) for r in (await conn.execute(columns)).all()])
        assert rows_of[0] == rows_of[1]
        for db, store in opened:
            rows, _ = await read_all(db)
            assert_seqs_gap_free(rows, await store.reads.latest_seq())
            last = {row["task_id"]: row for row in rows}  # rows are in seq order
            async with db.reader.connect() as conn:
                messages = dict((await conn.execute(sa.text("SELECT id, message FROM tasks"))).all())
            moved_here = [row for row in last.values() if row["actor"] == "test"]
            assert len(moved_here) > 10
            for row in moved_here:  # the fields were written with the state, to the right row
                assert messages[row["task_id"]] == row["to_state"]
    finally:
        for db, store in opened:
            await store.close()
            await db.dispose()
        if second is not None:
            await second.__aexit__(None, None, None)
