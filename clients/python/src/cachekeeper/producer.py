"""Producers: enqueue cachekeeper jobs through the worker's inbox.

Each method checks the job as the Go client does (a refusal names the field
and sends nothing), builds the inbox entry (module :mod:`cachekeeper.entry`)
and pushes it with one LPUSH; ids are carried many per entry, and a
:meth:`Producer.batch` sends everything it collected in one round trip.

A running worker moves entries into its queue within milliseconds; while no
worker runs, they wait in the list and nothing is lost.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator, Awaitable, Dict, Generic, Iterable, Iterator, List, Optional, Sequence, TypeVar

from . import _keys, entry, kinds
from ._validate import Duration
from .entry import Options
from .errors import FieldError, InvalidPayload

R = TypeVar("R")

_LPUSH_CHUNK = 1000  # values per LPUSH command inside one pipeline


class DeadLetter:
    """An entry the worker refused, newest first: the entry as pushed, why,
    and when (``cachekeeper inbox dead`` lists, replays and purges them)."""

    __slots__ = ("entry", "error", "time")

    def __init__(self, entry: str, error: str, time: str) -> None:
        self.entry = entry
        self.error = error
        self.time = time

    def __repr__(self) -> str:
        return "DeadLetter(error=%r, entry=%r)" % (self.error, self.entry)


def _dead(raw: Any) -> DeadLetter:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        d = json.loads(text)
        return DeadLetter(str(d.get("entry", "")), str(d.get("error", "")), str(d.get("time", "")))
    except (ValueError, AttributeError) as e:
        return DeadLetter(text, "unreadable dead-letter record: %s" % e, "")


class _Jobs(Generic[R]):
    """The job methods, shared by the sync and async producers and batches.
    Subclasses say what happens to the checked entries (``_submit``)."""

    _rule: _keys.Rule
    _queues: Optional[List[str]]
    _caches: Optional[List[str]]
    _kinds: Dict[str, kinds.Kind]
    _max_ids: int

    def _setup(
        self,
        key_prefix: str,
        queues: Optional[Iterable[str]],
        caches: Optional[Iterable[str]],
        owned_keys: Iterable[str],
        max_ids_per_entry: int,
        inbox_key: Optional[str] = None,
        trace_context: bool = True,
    ) -> None:
        try:
            self._prefix = _keys.check_prefix(key_prefix)
        except ValueError as e:
            raise InvalidPayload("key_prefix: %s" % e) from None
        owned = list(owned_keys)
        if inbox_key:
            owned.append(inbox_key)  # an inbox outside the prefix is the workers' own too
        self.inbox_key = inbox_key or _keys.inbox(self._prefix)
        self._rule = _keys.Rule(self._prefix, owned)
        self._queues = sorted(set(queues)) if queues is not None else None
        self._caches = sorted(set(caches)) if caches is not None else None
        self._kinds = dict(kinds.BUILTIN)
        if max_ids_per_entry < 1:
            raise InvalidPayload("max_ids_per_entry must be at least 1, got %d" % max_ids_per_entry)
        self._max_ids = max_ids_per_entry
        self._trace = trace_context

    def _share(self, other: "_Jobs[Any]") -> None:
        self._prefix = other._prefix
        self.inbox_key = other.inbox_key
        self._rule = other._rule
        self._queues = other._queues
        self._caches = other._caches
        self._kinds = other._kinds
        self._max_ids = other._max_ids
        self._trace = other._trace

    def _submit(self, entries: List[bytes]) -> R:
        raise NotImplementedError

    def register(self, kind: kinds.Kind) -> None:
        """Accept jobs of an application's own kind (see :func:`kinds.own_kind`).
        The workers must handle it, or they dead-letter its entries."""
        if kind.name in kinds.BUILTIN:
            raise InvalidPayload('kind "%s" is built in' % kind.name)
        self._kinds[kind.name] = kind

    def entries(self, kind: str, args: Dict[str, Any], options: Optional[Options] = None) -> List[bytes]:
        """Check one job and return its inbox entry (a list of one), without
        sending anything. Raises :class:`InvalidPayload`."""
        k = self._kinds.get(kind) if isinstance(kind, str) else None
        if k is None:
            known = ", ".join(sorted(self._kinds))
            raise InvalidPayload('unknown kind "%s" (known: %s); declare your own with kinds.own_kind and register it' % (kind, known))
        trace = entry.current_trace() if self._trace else ("", "")
        return [entry.build(k, args, options, self._rule, self._queues, self._caches, trace)]

    def _split(self, kind: str, fixed: Dict[str, Any], field: str, values: Sequence[Any], size: int, options: Optional[Options]) -> List[bytes]:
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise FieldError(kind, field, "must be a list of ids")
        chunks = [list(values[i : i + size]) for i in range(0, len(values), size)] or [[]]
        if len(chunks) > 1 and options is not None and options.task_id:
            raise FieldError(kind, "options.task_id", "names one job, but %d ids make %d entries of at most %d; give fewer ids or no task_id" % (len(values), len(chunks), size))
        out: List[bytes] = []
        for c in chunks:
            args = dict(fixed)
            args[field] = c
            out += self.entries(kind, args, options)
        return out

    def enqueue(self, kind: str, args: Dict[str, Any], options: Optional[Options] = None) -> R:
        """Enqueue one job of any kind with its arguments as the Go payload
        has them, for example ``enqueue("cache:warm_all", {"cache": "user"})``."""
        return self._submit(self.entries(kind, args, options))

    def warm(self, cache: str, ids: Sequence[Any], options: Optional[Options] = None) -> R:
        """Refresh the cached rows of ids from the database. Without options
        the worker coalesces them with other warms of the cache (one SQL query
        for many requests); ids are sent up to 1000 per entry."""
        return self._submit(self._split(kinds.WARM, {"cache": cache}, "ids", ids, min(self._max_ids, kinds.MAX_WARM_IDS), options))

    def warm_all(self, cache: str, max_keys_per_second: int = 0, restart: bool = False, options: Optional[Options] = None) -> R:
        """Stream a whole table into a cache, resuming from its checkpoint."""
        return self.enqueue(kinds.WARM_ALL, {"cache": cache, "max_keys_per_second": max_keys_per_second, "restart": restart}, options)

    def invalidate(self, cache: str, ids: Sequence[Any], rewarm: bool = False, options: Optional[Options] = None) -> R:
        """Delete the cached rows of ids (fenced: no warm in flight writes an
        older row back); with rewarm, warm them again afterwards."""
        return self._submit(self._split(kinds.INVALIDATE, {"cache": cache, "rewarm": rewarm}, "ids", ids, self._max_ids, options))

    def invalidate_keys(self, keys: Sequence[str], options: Optional[Options] = None) -> R:
        """Delete literal keys (never cachekeeper's or the queue's own)."""
        return self.enqueue(kinds.INVALIDATE, {"keys": keys}, options)

    def invalidate_pattern(self, pattern: str, allow_all: bool = False, max_keys_per_second: int = 0, options: Optional[Options] = None) -> R:
        """Delete every key matching a glob, with SCAN and UNLINK."""
        return self.enqueue(kinds.INVALIDATE_PATTERN, {"pattern": pattern, "allow_all": allow_all, "max_keys_per_second": max_keys_per_second}, options)

    def invalidate_tag(self, tag: str, options: Optional[Options] = None) -> R:
        """Delete every key carrying tag."""
        return self.enqueue(kinds.INVALIDATE_TAG, {"tag": tag}, options)

    def cleanup_sessions(
        self,
        pattern: str = "",
        max_age: Optional[Duration] = None,
        idle_timeout: Optional[Duration] = None,
        max_keys_per_second: int = 0,
        dry_run: bool = False,
        options: Optional[Options] = None,
    ) -> R:
        """Remove expired, idle and orphaned sessions (defaults: the workers' configuration)."""
        args = {"pattern": pattern, "max_age": max_age, "idle_timeout": idle_timeout, "max_keys_per_second": max_keys_per_second, "dry_run": dry_run}
        return self.enqueue(kinds.SESSION_CLEANUP, args, options)

    def revoke_sessions(self, user_id: Any, scan: bool = False, options: Optional[Options] = None) -> R:
        """Delete every session of a user."""
        return self.enqueue(kinds.SESSION_REVOKE, {"user_id": user_id, "scan": scan}, options)

    def prune_rate_limits(self, pattern: str = "", window: Optional[Duration] = None, max_keys_per_second: int = 0, options: Optional[Options] = None) -> R:
        """Trim sliding-window rate-limit sets (defaults: the workers' configuration)."""
        return self.enqueue(kinds.RATELIMIT_PRUNE, {"pattern": pattern, "window": window, "max_keys_per_second": max_keys_per_second}, options)

    def publish(self, channel: str, message: str, options: Optional[Options] = None) -> R:
        """Publish message on a pub/sub channel, now or (process_in / process_at) later."""
        return self.enqueue(kinds.NOTIFY_PUBLISH, {"channel": channel, "message": message}, options)


class Batch(_Jobs[None]):
    """Jobs collected by :meth:`Producer.batch`, sent together when it ends.
    Each is checked when it is added; a refused one raises at once."""

    def __init__(self, parent: "_Jobs[Any]") -> None:
        self._share(parent)
        self.pending: List[bytes] = []

    def _submit(self, entries: List[bytes]) -> None:
        self.pending += entries


class Producer(_Jobs[int]):
    """Enqueues jobs on a synchronous redis-py client; safe to share between
    threads. Every method returns the number of entries pushed.

    key_prefix, inbox_key:  the workers' ``key_prefix`` and ``inbox.key``.
    queues, caches:         when given, the only queues and caches jobs may
                            name (the workers' ``worker.queues`` and
                            ``caches``): a misspelt name is refused here
                            instead of waiting forever or being archived.
    owned_keys:             keys the workers own outside the prefix.
    max_ids_per_entry:      ids carried by one entry (default 1000).
    trace_context:          give each entry the current OpenTelemetry span's
                            traceparent, so the job's spans join the
                            request's trace (when opentelemetry is installed).
    """

    def __init__(
        self,
        redis: Any,
        *,
        key_prefix: str = "",
        inbox_key: Optional[str] = None,
        queues: Optional[Iterable[str]] = None,
        caches: Optional[Iterable[str]] = None,
        owned_keys: Iterable[str] = (),
        max_ids_per_entry: int = 1000,
        trace_context: bool = True,
    ) -> None:
        self._setup(key_prefix, queues, caches, owned_keys, max_ids_per_entry, inbox_key, trace_context)
        self._redis = redis

    def _submit(self, entries: List[bytes]) -> int:
        if len(entries) <= _LPUSH_CHUNK:
            self._redis.lpush(self.inbox_key, *entries)
            return len(entries)
        with self._redis.pipeline(transaction=False) as p:
            for i in range(0, len(entries), _LPUSH_CHUNK):
                p.lpush(self.inbox_key, *entries[i : i + _LPUSH_CHUNK])
            p.execute()
        return len(entries)

    def dead_letters(self, count: int = 10) -> List[DeadLetter]:
        """The newest entries the worker refused (a kind no worker handles,
        say), with the reason."""
        return [_dead(x) for x in self._redis.lrange(_keys.dead_letter(self.inbox_key), 0, count - 1)]

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """Collect jobs and send them in one round trip when the block ends
        (nothing is sent if it raises)::

            with producer.batch() as b:
                b.invalidate("user", [1, 2])
                b.publish("orders", "42")
        """
        b = Batch(self)
        yield b
        if b.pending:
            self._submit(b.pending)


class AsyncProducer(_Jobs[Awaitable[int]]):
    """:class:`Producer` on a ``redis.asyncio`` client: every method is a
    coroutine returning the number of entries pushed."""

    def __init__(
        self,
        redis: Any,
        *,
        key_prefix: str = "",
        inbox_key: Optional[str] = None,
        queues: Optional[Iterable[str]] = None,
        caches: Optional[Iterable[str]] = None,
        owned_keys: Iterable[str] = (),
        max_ids_per_entry: int = 1000,
        trace_context: bool = True,
    ) -> None:
        self._setup(key_prefix, queues, caches, owned_keys, max_ids_per_entry, inbox_key, trace_context)
        self._redis = redis

    async def _push(self, entries: List[bytes]) -> int:
        if len(entries) <= _LPUSH_CHUNK:
            await self._redis.lpush(self.inbox_key, *entries)
            return len(entries)
        async with self._redis.pipeline(transaction=False) as p:
            for i in range(0, len(entries), _LPUSH_CHUNK):
                p.lpush(self.inbox_key, *entries[i : i + _LPUSH_CHUNK])
            await p.execute()
        return len(entries)

    def _submit(self, entries: List[bytes]) -> Awaitable[int]:
        return self._push(entries)

    async def dead_letters(self, count: int = 10) -> List[DeadLetter]:
        """:meth:`Producer.dead_letters`."""
        return [_dead(x) for x in await self._redis.lrange(_keys.dead_letter(self.inbox_key), 0, count - 1)]

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """``async with producer.batch() as b:`` as :meth:`Producer.batch`."""
        b = Batch(self)
        yield b
        if b.pending:
            await self._push(b.pending)

