"""Cache events: what the worker changed, over Redis pub/sub, and a signal
after every gap.

The worker publishes one JSON object per change on ``cachekeeper:events``
(the ``events.channel`` setting)::

    {"type": "cache.invalidated", "cache": "user", "ids": ["1"], "keys": ["user:1"],
     "key_count": 1, "task_id": "...", "time": "2024-01-15T10:30:00.123456+00:00"}

``time`` is UTC with microseconds and an explicit offset, so
``datetime.fromisoformat`` parses it on every Python from 3.7 on.

Pub/sub does not replay: events published while a subscriber was
disconnected are lost. :class:`Subscriber` reconnects by itself and, once
subscribed again, yields an event of type :data:`TYPE_MISSED` (``missed`` set)
before any newer one: an application keeping local copies drops them all
then, and since the new subscription is already active, no later change
slips past it.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional, Tuple, Union

from . import _keys

TYPE_WARMED = "cache.warmed"
TYPE_INVALIDATED = "cache.invalidated"
TYPE_DELETED = "cache.deleted"
TYPE_SESSION_REVOKED = "session.revoked"
TYPE_MISSED = "events.missed"
"""The synthetic event after a reconnect: events may have been lost."""

DEFAULT_CHANNEL = _keys.events_channel(_keys.DEFAULT_PREFIX)

log = logging.getLogger("cachekeeper.events")


class Event:
    """One change the worker made (see the Go ``events.Event``).

    keys and ids are capped by the worker (``events.max_keys``); key_count is
    always the total. When it exceeds ``len(keys)``, drop every local copy of
    ``cache`` (or of the keys matching ``pattern``, or carrying ``tag``).
    """

    __slots__ = ("type", "cache", "ids", "keys", "key_count", "pattern", "tag", "user_id", "task_id", "time", "missed")

    def __init__(
        self,
        type: str,
        time: datetime.datetime,
        cache: str = "",
        ids: Tuple[str, ...] = (),
        keys: Tuple[str, ...] = (),
        key_count: int = 0,
        pattern: str = "",
        tag: str = "",
        user_id: str = "",
        task_id: str = "",
        missed: bool = False,
    ) -> None:
        self.type = type
        self.time = time
        self.cache = cache
        self.ids = tuple(ids)
        self.keys = tuple(keys)
        self.key_count = key_count
        self.pattern = pattern
        self.tag = tag
        self.user_id = user_id
        self.task_id = task_id
        self.missed = missed

    @property
    def capped(self) -> bool:
        """A cache event whose lists were cut short: more keys changed than
        are listed, so the receiver cannot tell which copies to drop."""
        return self.type.startswith("cache.") and self.key_count > max(len(self.keys), len(self.ids))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "Event(%s)" % ", ".join("%s=%r" % (k, v) for k, v in self.as_dict().items() if v not in ("", (), 0, False))


def parse_time(s: str) -> datetime.datetime:
    """An event's time: ``2024-01-15T10:30:00.123456+00:00``. Older workers
    wrote nanoseconds and ``Z``; those are read too (fraction cut to
    microseconds)."""
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dot = s.find(".")
    if dot >= 0:
        end = dot + 1
        while end < len(s) and s[end].isdigit():
            end += 1
        frac = s[dot + 1 : end][:6].ljust(6, "0")
        s = s[:dot] + "." + frac + s[end:]
    return datetime.datetime.fromisoformat(s)


def decode(data: Union[bytes, str]) -> Event:
    """Parse one message of the events channel; ValueError when it is not an event."""
    try:
        d = json.loads(data)
    except ValueError as e:
        raise ValueError("not an event: %s" % e) from None
    if not isinstance(d, dict) or not isinstance(d.get("type"), str):
        raise ValueError("not an event: no type")

    def s(name: str) -> str:
        x = d.get(name) or ""
        if not isinstance(x, str):
            raise ValueError("not an event: %s is not a string" % name)
        return x

    def strs(name: str) -> Tuple[str, ...]:
        x = d.get(name) or []
        if not isinstance(x, list) or not all(isinstance(i, str) for i in x):
            raise ValueError("not an event: %s is not a list of strings" % name)
        return tuple(x)

    return Event(
        type=d["type"],
        time=parse_time(s("time")) if d.get("time") else datetime.datetime.now(datetime.timezone.utc),
        cache=s("cache"),
        ids=strs("ids"),
        keys=strs("keys"),
        key_count=int(d.get("key_count") or 0),
        pattern=s("pattern"),
        tag=s("tag"),
        user_id=s("user_id"),
        task_id=s("task_id"),
        missed=bool(d.get("missed")),
    )


def _gap() -> Event:
    return Event(type=TYPE_MISSED, time=datetime.datetime.now(datetime.timezone.utc), missed=True)


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


class _State:
    """What a subscriber knows across its connections."""

    def __init__(self, channel: str, health_check: float, min_backoff: float, max_backoff: float, on_subscribed: Optional[Callable[[], None]]) -> None:
        if health_check <= 0:
            raise ValueError("health_check must be positive, got %r" % health_check)
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff, got %r and %r" % (min_backoff, max_backoff))
        self.channel = channel
        self.health_check = health_check
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.on_subscribed = on_subscribed
        self.ever_subscribed = False
        self.reconnects = 0

    def handle(self, msg: Any) -> List[Event]:
        """Events to yield for one pub/sub message (a confirmation after a
        gap yields the gap signal)."""
        kind = _text(msg.get("type"))
        if _text(msg.get("channel")) != self.channel:
            return []
        if kind == "subscribe":
            if self.on_subscribed is not None:
                self.on_subscribed()
            gap = self.ever_subscribed
            self.ever_subscribed = True
            return [_gap()] if gap else []
        if kind == "unsubscribe":
            raise ConnectionError("the server ended the subscription")
        if kind == "message":
            try:
                return [decode(msg["data"])]
            except ValueError as e:
                log.warning("events: message on %s is not an event; ignored: %s", self.channel, e)
        return []


class Subscriber:
    """Yields the events of one channel, reconnecting forever, with the gap
    signal after each reconnect::

        for ev in Subscriber(redis.Redis(...)):
            if ev.missed:
                local.clear()
            for k in ev.keys:
                local.pop(k, None)

    health_check: seconds of silence before a PING; no reply within as long
    again counts as a dead connection. min_backoff, max_backoff: seconds
    between reconnection attempts. on_subscribed is called each time Redis
    confirms the subscription (first time and after every reconnect).
    :meth:`close` (from any thread) ends the iteration within a second.
    """

    def __init__(
        self,
        redis: Any,
        channel: str = DEFAULT_CHANNEL,
        *,
        health_check: float = 30.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_subscribed: Optional[Callable[[], None]] = None,
    ) -> None:
        self._redis = redis
        self._state = _State(channel, health_check, min_backoff, max_backoff, on_subscribed)
        self._stop = threading.Event()

    @property
    def reconnects(self) -> int:
        """How many times the subscription was lost and made again."""
        return self._state.reconnects

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[Event]:
        st = self._state
        backoff = st.min_backoff
        while not self._stop.is_set():
            ps = self._redis.pubsub()
            try:
                ps.subscribe(st.channel)
                silent_since = time.monotonic()
                ping_sent = False
                while not self._stop.is_set():
                    msg = ps.get_message(timeout=min(1.0, st.health_check))
                    if msg is None:
                        if time.monotonic() - silent_since < st.health_check:
                            continue
                        if ping_sent:
                            raise ConnectionError("no reply to PING within %ss" % st.health_check)
                        ps.ping()
                        ping_sent = True
                        silent_since = time.monotonic()
                        continue
                    silent_since = time.monotonic()
                    ping_sent = False
                    out = st.handle(msg)
                    if out and _text(msg.get("type")) == "subscribe":
                        st.reconnects += 1
                    backoff = st.min_backoff
                    yield from out
            except Exception as e:
                if self._stop.is_set():
                    break
                if not _is_connection_error(e):
                    raise
                log.warning("events: subscription to %s lost; reconnecting in %.2fs: %s", st.channel, backoff, e)
            finally:
                try:
                    ps.close()
                except Exception:
                    pass
            self._stop.wait(backoff)
            backoff = min(2 * backoff, st.max_backoff)


class AsyncSubscriber:
    """:class:`Subscriber` on a ``redis.asyncio`` client::

        async for ev in AsyncSubscriber(redis.asyncio.Redis(...)):
            ...

    Cancel the task iterating it to stop.
    """

    def __init__(
        self,
        redis: Any,
        channel: str = DEFAULT_CHANNEL,
        *,
        health_check: float = 30.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        on_subscribed: Optional[Callable[[], None]] = None,
    ) -> None:
        self._redis = redis
        self._state = _State(channel, health_check, min_backoff, max_backoff, on_subscribed)

    @property
    def reconnects(self) -> int:
        return self._state.reconnects

    async def __aiter__(self) -> AsyncIterator[Event]:
        st = self._state
        backoff = st.min_backoff
        while True:
            ps = self._redis.pubsub()
            try:
                await ps.subscribe(st.channel)
                silent_since = time.monotonic()
                ping_sent = False
                while True:
                    msg = await ps.get_message(timeout=min(1.0, st.health_check))
                    if msg is None:
                        if time.monotonic() - silent_since < st.health_check:
                            await asyncio.sleep(0)
                            continue
                        if ping_sent:
                            raise ConnectionError("no reply to PING within %ss" % st.health_check)
                        await ps.ping()
                        ping_sent = True
                        silent_since = time.monotonic()
                        continue
                    silent_since = time.monotonic()
                    ping_sent = False
                    out = st.handle(msg)
                    if out and _text(msg.get("type")) == "subscribe":
                        st.reconnects += 1
                    backoff = st.min_backoff
                    for ev in out:
                        yield ev
            except Exception as e:
                if not _is_connection_error(e):
                    raise
                log.warning("events: subscription to %s lost; reconnecting in %.2fs: %s", st.channel, backoff, e)
            finally:
                try:
                    await ps.close()
                except Exception:
                    pass
            await asyncio.sleep(backoff)
            backoff = min(2 * backoff, st.max_backoff)


def _is_connection_error(e: BaseException) -> bool:
    import redis.exceptions as rex

    return isinstance(e, (ConnectionError, TimeoutError, OSError, rex.ConnectionError, rex.TimeoutError))
