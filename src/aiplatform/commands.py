"""The command path: load a stream, fold it, `decide`, append with the expected version.

A conflict means another writer got in between; when the caller did not pin a version
(`If-Match`), deciding again on the fresh state is safe, so the handler retries a few times.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

import asyncpg

from aiplatform.eventstore.codec import Event, EventMetadata, RecordedEvent
from aiplatform.eventstore.errors import ConcurrencyError
from aiplatform.eventstore.store import AppendResult, EventStore

State = TypeVar("State")
Command = TypeVar("Command")

MAX_CONFLICT_RETRIES = 3
MAX_RECORD_ATTEMPTS = 10


@dataclass(frozen=True)
class Aggregate(Generic[State, Command]):
    stream_id: Callable[[str], str]
    evolve: Callable[[State | None, Event], State | None]
    decide: Callable[[State | None, Command], list[Event]]

    def fold(self, events: Sequence[RecordedEvent]) -> State | None:
        state: State | None = None
        for recorded in events:
            state = self.evolve(state, recorded.event)
        return state


@dataclass(frozen=True)
class CommandContext:
    metadata: EventMetadata
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True)
class CommandResult(Generic[State]):
    state: State | None
    stream_version: int
    # The global position of the command's last event: a read passing it as `after` sees the
    # command's effect. None when the command changed nothing.
    position: int | None
    created_at: datetime | None
    updated_at: datetime | None
    duplicate: bool = False


AppendListener = Callable[[AppendResult], Awaitable[None]]
# Writes that must commit or roll back with the events (a uniqueness claim, a password hash):
# called inside the append's transaction, after the append.
InTransaction = Callable[[asyncpg.Connection, AppendResult], Awaitable[None]]


@dataclass
class CommandHandler:
    store: EventStore
    # Called after each append commits (the projector's wake-up among them).
    listeners: list[AppendListener] = field(default_factory=list)

    async def load(
        self, aggregate: Aggregate[State, Command], entity_id: str
    ) -> tuple[State | None, list[RecordedEvent]]:
        events = await self.store.read_stream(aggregate.stream_id(entity_id))
        return aggregate.fold(events), events

    async def current_state(
        self, aggregate: Aggregate[State, Command], entity_id: str
    ) -> State | None:
        """The aggregate folded from its whole stream: always up to date, unlike a read model."""
        return aggregate.fold(await self.store.read_stream(aggregate.stream_id(entity_id)))

    async def record(
        self, stream_id: str, events: list[Event], context: CommandContext
    ) -> AppendResult:
        """Appends facts that were checked elsewhere and need no decision, whatever the
        stream's version: a login (the credentials were the check) must not read a stream
        that grows with every login. Another writer taking the same version only means
        trying again at the next one."""
        for attempt in range(1, MAX_RECORD_ATTEMPTS + 1):
            try:
                result = await self.store.append(
                    stream_id, events, context.metadata, expected_version=None
                )
                break
            except ConcurrencyError:
                if attempt == MAX_RECORD_ATTEMPTS:
                    raise
        for listener in self.listeners:
            await listener(result)
        return result

    async def _current(
        self, aggregate: Aggregate[State, Command], entity_id: str, new_stream: bool
    ) -> tuple[State | None, list[RecordedEvent]]:
        if new_stream:
            return None, []
        return await self.load(aggregate, entity_id)

    async def handle(
        self,
        aggregate: Aggregate[State, Command],
        entity_id: str,
        command: Command,
        context: CommandContext,
        *,
        retry_on_conflict: bool = True,
        new_stream: bool = False,
        in_transaction: InTransaction | None = None,
    ) -> CommandResult[State]:
        """`new_stream`: the entity id was just minted, so its stream is known to be empty and
        is not read; the append's expected version 0 still refuses an existing stream."""
        if context.idempotency_key is not None:
            previous = await self.store.previous_result(
                context.idempotency_key, context.request_hash
            )
            if previous is not None:
                return await self._replayed(aggregate, previous)
        attempts = MAX_CONFLICT_RETRIES if retry_on_conflict else 1
        for attempt in range(1, attempts + 1):
            current = await self._current(aggregate, entity_id, new_stream)
            state, history = current
            version = history[-1].stream_version if history else 0
            events = aggregate.decide(state, command)
            if not events:
                return CommandResult(
                    state=state,
                    stream_version=version,
                    position=None,
                    created_at=history[0].recorded_at if history else None,
                    updated_at=history[-1].recorded_at if history else None,
                )
            try:
                result = await self._append(
                    aggregate.stream_id(entity_id), events, version, context, in_transaction
                )
            except ConcurrencyError:
                if attempt == attempts:
                    raise
                continue
            if result.duplicate:
                return await self._replayed(aggregate, result)
            for listener in self.listeners:
                await listener(result)
            for event in events:
                state = aggregate.evolve(state, event)
            return CommandResult(
                state=state,
                stream_version=result.stream_version,
                position=result.last_position,
                created_at=history[0].recorded_at if history else result.recorded_at,
                updated_at=result.recorded_at,
            )
        raise AssertionError("unreachable: the loop returns or raises")

    async def _append(
        self,
        stream_id: str,
        events: list[Event],
        expected_version: int,
        context: CommandContext,
        in_transaction: InTransaction | None,
    ) -> AppendResult:
        if in_transaction is None:
            return await self.store.append(
                stream_id,
                events,
                context.metadata,
                expected_version=expected_version,
                idempotency_key=context.idempotency_key,
                request_hash=context.request_hash,
            )
        async with self.store.pool.acquire() as connection, connection.transaction():
            result = await self.store.append(
                stream_id,
                events,
                context.metadata,
                expected_version=expected_version,
                idempotency_key=context.idempotency_key,
                request_hash=context.request_hash,
                connection=connection,
            )
            if not result.duplicate:
                await in_transaction(connection, result)
            return result

    async def _replayed(
        self, aggregate: Aggregate[State, Command], previous: AppendResult
    ) -> CommandResult[State]:
        events = await self.store.read_stream(
            previous.stream_id, up_to_version=previous.stream_version
        )
        return CommandResult(
            state=aggregate.fold(events),
            stream_version=previous.stream_version,
            position=previous.last_position,
            created_at=events[0].recorded_at if events else None,
            updated_at=events[-1].recorded_at if events else None,
            duplicate=True,
        )
