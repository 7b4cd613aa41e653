"""One feed per API process: a single Redis subscription fanned out to every client.

The feed subscribes to the projector's heads (`heads.HEADS_CHANNEL`) and to the GPU samples.
A head says how far a read model has read the log: up to it, every event is committed and none
can still appear. The feed reads each new event once per lane, finds its channels and puts one
frame per event on the queue of every client of the lane subscribed to one of them. Two lanes:

- clients without `notifications` follow the furthest head of any read model: the first read
  model the projector catches up is enough, so they do not wait for the others;
- clients with `notifications` follow the head of the notifications read model, so that the
  notifications of an event are projected when the event goes out, and events and
  notifications reach them in one order, the log's.

Each lane also reads the notifications read model's checkpoint every `poll_s`, so a lost
message, or Redis being down, only delays messages.

A client's queue is bounded: a client that falls `queue_limit` messages behind is dropped (its
stream ends, and it resumes with `Last-Event-ID`) rather than growing this process's memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import suppress
from typing import Any

import asyncpg
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from aiplatform.cache import Cache
from aiplatform.projectors.read_models import ReadModel
from aiplatform.streams.channels import (
    ADMIN,
    GPU,
    NOTIFICATIONS,
    StreamProjects,
    event_channels,
    user_channel,
)
from aiplatform.streams.frames import HEARTBEAT, gpu_frame
from aiplatform.streams.heads import HEADS_CHANNEL, Cursor, Head, decode_head
from aiplatform.streams.history import (
    LoggedEvent,
    ProjectedNotification,
    checkpoint_cursor,
    notifications_at,
    notifications_between,
    read_events,
)
from aiplatform.streams.revocation import REVOKED, may_revoke, revoked_viewers

log = logging.getLogger(__name__)

Item = tuple[Cursor | None, bytes]  # (the cursor of its event, None for a GPU sample; frames)

HEARTBEAT_S = 15.0
TOO_FAR_BEHIND = "too far behind: reconnect with Last-Event-ID"
SHUTTING_DOWN = "the server is shutting down: reconnect with Last-Event-ID"
POLL_S = 1.0
QUEUE_LIMIT = 512
BATCH_SIZE = 500
RESUBSCRIBE_S = 1.0
FIRST_SUBSCRIPTION_S = 2.0


class Subscriber:
    """One client's channels and queue. `start`: the cursor the feed had reached when it
    subscribed; everything after it comes live.

    A bare future wakes the client: with a thousand clients per event, an `asyncio.Event` and
    a timeout per wait cost several times the rest of a delivery (measured)."""

    __slots__ = (
        "_items",
        "_waiter",
        "channels",
        "closed_because",
        "is_admin",
        "lane",
        "limit",
        "start",
        "user_id",
    )

    def __init__(
        self,
        user_id: str,
        is_admin: bool,
        channels: list[str],
        start: Cursor,
        limit: int,
        lane: Lane,
    ):
        self.user_id = user_id
        self.is_admin = is_admin
        self.lane = lane
        self.channels = channels
        self.start = start
        self.limit = limit
        # Why the feed closed the stream; None while it is open.
        self.closed_because: str | None = None
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Item) -> bool:
        """False when the queue is full."""
        if len(self._items) >= self.limit:
            return False
        self._items.append(item)
        self._wake()
        return True

    def close(self, reason: str, *, discard: bool) -> None:
        """Ends the stream after what is queued, or at once (`discard`)."""
        self.closed_because = reason
        if discard:
            self._items.clear()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Item]:
        """Everything queued, once there is something (or the stream was closed)."""
        if not self._items and self.closed_because is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items = list(self._items)
        self._items.clear()
        return items


def public_name(channel: str) -> str:
    return NOTIFICATIONS if channel.startswith(NOTIFICATIONS + ":") else channel


class Lane:
    """Clients that follow the same heads, and how far the feed has read the log for them."""

    def __init__(self, feed: StreamFeed, follows: str | None):
        self.feed = feed
        self.follows = follows  # a read model's checkpoint; None: any read model's
        self.cursor: Cursor = (0, 0)
        self.head: Cursor = (0, 0)
        self.subscribers: dict[str, set[Subscriber]] = {}
        self._wake = asyncio.Event()

    def offer(self, head: Head) -> None:
        if (self.follows is None or head.checkpoint == self.follows) and head.cursor > self.head:
            self.head = head.cursor
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def add(self, subscriber: Subscriber) -> None:
        for channel in subscriber.channels:
            self.subscribers.setdefault(channel, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        for channel in subscriber.channels:
            subscribers = self.subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self.subscribers[channel]

    def deliver(self, subscriber: Subscriber, item: Item) -> None:
        if not subscriber.put(item):
            log.info("dropped a live stream %d messages behind", subscriber.limit)
            self.remove(subscriber)
            subscriber.close(TOO_FAR_BEHIND, discard=True)

    async def pump(self) -> None:
        feed = self.feed
        while True:
            try:
                try:
                    async with asyncio.timeout(feed.poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    polled = await checkpoint_cursor(feed.pool, feed.checkpoint)
                    self.head = max(self.head, polled)
                self._wake.clear()
                while self.cursor < self.head:
                    await self._advance()
            except asyncio.CancelledError:
                raise
            except Exception:  # the feed must outlive a failed read: it retries at the next wake
                log.exception("live streams could not read the log")
                await asyncio.sleep(feed.poll_s)

    async def _advance(self) -> None:
        feed = self.feed
        up_to = self.head
        if not any(channel != GPU for channel in self.subscribers):
            self.cursor = up_to
            return
        events = await read_events(feed.pool, self.cursor, up_to, feed.batch_size)
        await feed.learn_projects(events)
        notifications = await self._notifications_of(events)
        self._dispatch(events, notifications)
        self.cursor = events[-1].cursor if len(events) == feed.batch_size else up_to

    async def _notifications_of(self, events: list[LoggedEvent]) -> list[ProjectedNotification]:
        """The notifications of the batch's events for every user subscribed when the batch is
        dispatched (one may subscribe while this reads)."""
        found: list[ProjectedNotification] = []
        asked: set[str] = set()
        positions = [event.cursor[1] for event in events]
        while positions:
            users = self._notified_users() - asked
            if not users:
                break
            found += await notifications_at(
                self.feed.pool, self.feed.notifications_table, positions, sorted(users)
            )
            asked |= users
        return found

    def _notified_users(self) -> set[str]:
        prefix = NOTIFICATIONS + ":"
        return {c[len(prefix) :] for c in self.subscribers if c.startswith(prefix)}

    def _dispatch(
        self, events: list[LoggedEvent], notifications: list[ProjectedNotification]
    ) -> None:
        """Synchronous, so that a client subscribes either before a batch or after it."""
        notes: dict[int, list[ProjectedNotification]] = {}
        for note in notifications:
            notes.setdefault(note.cursor[1], []).append(note)
        projects = self.feed.projects
        for event in events:
            frames: dict[Subscriber, bytes] = {}
            for channel in event_channels(event.stream_id, projects.get(event.stream_id)):
                subscribers = self.subscribers.get(channel)
                if subscribers:
                    data = event.frame(public_name(channel))
                    for subscriber in subscribers:
                        frames.setdefault(subscriber, data)
            # A notification goes in the same write as its event's frame: one position, one
            # message boundary a client can resume from.
            for note in notes.get(event.cursor[1], ()):
                for subscriber in self.subscribers.get(user_channel(note.user_id), ()):
                    frames[subscriber] = frames.get(subscriber, b"") + note.frame
            for subscriber, data in frames.items():
                self.deliver(subscriber, (event.cursor, data))
            # After its own frame: a member removed from a project sees that, then nothing.
            if not may_revoke(event.event):
                continue
            subscribed = {s for subscribers in self.subscribers.values() for s in subscribers}
            for subscriber in revoked_viewers(event.event, subscribed, projects.get):
                self.remove(subscriber)
                subscriber.close(REVOKED, discard=False)


class StreamFeed:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        cache: Cache,
        notifications: ReadModel,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        poll_s: float = POLL_S,
        queue_limit: int = QUEUE_LIMIT,
        batch_size: int = BATCH_SIZE,
    ):
        self.pool = pool
        # The feed's own client, without a socket timeout: a subscription waits by design.
        self.redis = redis
        self.checkpoint = notifications.checkpoint
        self.notifications_table = notifications.table("notifications")
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self.queue_limit = queue_limit
        self.batch_size = batch_size
        self.projects = StreamProjects(pool)
        self.heads_channel = cache.channel(HEADS_CHANNEL)
        self.gpu_channel = cache.channel(GPU)
        # Whether the Redis subscription is up: streams open only while it is.
        self.subscribed = False
        self._fast = Lane(self, follows=None)
        self._notified = Lane(self, follows=self.checkpoint)
        self._lanes = (self._fast, self._notified)
        self._tasks: list[asyncio.Task[None]] = []

    def follow(self, notifications: ReadModel) -> None:
        """Moves to the version of the notifications read model that was switched in after a
        rebuild; its checkpoint is at or past the retired one's, so no notification is lost."""
        self.checkpoint = notifications.checkpoint
        self.notifications_table = notifications.table("notifications")
        self._notified.follows = self.checkpoint

    # Lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts at the head: what came before is history. Waits briefly for the subscription,
        so a process is ready when it starts serving (the subscription is retried anyway)."""
        head = await checkpoint_cursor(self.pool, self.checkpoint)
        for lane in self._lanes:
            lane.cursor = lane.head = head
        subscribing = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(subscribing), name="stream-feed-listen"),
            asyncio.create_task(self._beat(), name="stream-feed-heartbeat"),
            *(asyncio.create_task(lane.pump(), name="stream-feed-lane") for lane in self._lanes),
        ]
        with suppress(TimeoutError):
            async with asyncio.timeout(FIRST_SUBSCRIPTION_S):
                await subscribing.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        for lane in self._lanes:
            for subscribers in lane.subscribers.values():
                for subscriber in subscribers:
                    subscriber.close(SHUTTING_DOWN, discard=True)
            lane.subscribers.clear()
        await self.redis.aclose()

    # Clients ----------------------------------------------------------------------------------

    def subscribe(self, user_id: str, is_admin: bool, channels: list[str]) -> Subscriber:
        """`channels` as clients name them; `notifications` is the caller's own."""
        lane = self._notified if NOTIFICATIONS in channels else self._fast
        internal = [user_channel(user_id) if c == NOTIFICATIONS else c for c in channels]
        subscriber = Subscriber(user_id, is_admin, internal, lane.cursor, self.queue_limit, lane)
        lane.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.lane.remove(subscriber)

    @property
    def subscriber_count(self) -> int:
        return sum(
            len({s for subscribers in lane.subscribers.values() for s in subscribers})
            for lane in self._lanes
        )

    @property
    def cursor(self) -> Cursor:
        """How far every lane has read the log."""
        return min(lane.cursor for lane in self._lanes)

    async def _beat(self) -> None:
        """A comment to every client each `heartbeat_s`, so proxies and clients see a live
        connection. One timer for all: a timeout per client's wait would cost each message."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(self.heartbeat_s, 1.0))
            if time.monotonic() - last < self.heartbeat_s:
                continue
            last = time.monotonic()
            item: Item = (None, HEARTBEAT)
            for lane in self._lanes:
                for subscriber in {s for group in lane.subscribers.values() for s in group}:
                    lane.deliver(subscriber, item)

    # Redis ------------------------------------------------------------------------------------

    async def _listen(self, subscribing: asyncio.Event) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.heads_channel, self.gpu_channel)
                    self.subscribed = True
                    subscribing.set()
                    for lane in self._lanes:  # heads published while unsubscribed were missed
                        lane.wake()
                    async for message in pubsub.listen():
                        self._on_message(message)
            except (RedisError, OSError) as error:
                log.warning("live streams lost their Redis subscription, retrying: %s", error)
            finally:
                self.subscribed = False
            subscribing.set()
            await asyncio.sleep(RESUBSCRIBE_S)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        channel, data = message["channel"], message["data"]
        if isinstance(channel, bytes):
            channel = channel.decode()
        if channel == self.gpu_channel:
            item: Item = (None, gpu_frame(data))
            for lane in self._lanes:
                for subscriber in list(lane.subscribers.get(GPU, ())):
                    lane.deliver(subscriber, item)
            return
        head = decode_head(data)
        if head is not None:
            for lane in self._lanes:
                lane.offer(head)

    # The log ----------------------------------------------------------------------------------

    async def learn_projects(self, events: list[LoggedEvent]) -> None:
        for event in events:
            self.projects.learn(event.stream_id, event.event)
        await self.projects.look_up(
            e.stream_id for e in events if self.projects.get(e.stream_id) is None
        )

    # Resuming ---------------------------------------------------------------------------------

    async def replay(self, subscriber: Subscriber, after: Cursor) -> AsyncIterator[Item]:
        """The subscriber's messages after `after` up to where its live messages begin, from
        the log and the notifications read model."""
        up_to = subscriber.start
        if after >= up_to:
            return
        wanted = set(subscriber.channels)
        notes: deque[ProjectedNotification] = deque()
        own = user_channel(subscriber.user_id)
        if own in wanted:
            notes.extend(
                await notifications_between(
                    self.pool, self.notifications_table, subscriber.user_id, after, up_to
                )
            )
        streams = _stream_filter(subscriber.channels)
        cursor = after
        while True:
            events = await read_events(self.pool, cursor, up_to, self.batch_size, streams)
            await self.learn_projects(events)
            for event in events:
                while notes and notes[0].cursor < event.cursor:
                    note = notes.popleft()
                    yield note.cursor, note.frame
                channels = event_channels(event.stream_id, self.projects.get(event.stream_id))
                matched = next((c for c in channels if c in wanted), None)
                data = event.frame(public_name(matched)) if matched is not None else b""
                while notes and notes[0].cursor == event.cursor:
                    data += notes.popleft().frame
                if data:
                    yield event.cursor, data
            if len(events) < self.batch_size:
                break
            cursor = events[-1].cursor
        for note in notes:
            yield note.cursor, note.frame


def _stream_filter(channels: Iterable[str]) -> list[str] | None:
    """The streams that hold every event of these channels, when a few do; None when the
    channels need the whole log (a project's streams, or all of them)."""
    streams: list[str] = []
    for channel in channels:
        if channel == ADMIN or channel.startswith("project:"):
            return None
        if channel.startswith("job:"):
            streams.append("job-" + channel.removeprefix("job:"))
        elif channel.startswith(NOTIFICATIONS + ":"):
            streams.append("inbox-" + channel.removeprefix(NOTIFICATIONS + ":"))
    return streams
