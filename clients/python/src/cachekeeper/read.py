"""Reading a cached object through leases (the read protocol,
docs/read-protocol.md, library ``cachekeeper_v1``).

On a miss exactly one reader, across every process, is granted a lease and
calls the loader (the database query); the others wait for its fill instead
of querying. The fill is fenced like the worker's writes: when the key was
invalidated after the lease was granted, the fill is refused and the stale
row never lands. Within one process, concurrent gets of one id share one
call (single flight), so a burst costs one connection, not one per request.

The cached hash is what the worker writes: one field per column, NULLs left
out, values rendered by type (:func:`render`). Use the same key template and
TTL as the cache's entry in the workers' configuration.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import secrets
import threading
import time
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Tuple, Union

from . import _functions, _keys
from ._keys import Template

Row = Mapping[str, Any]
Loader = Callable[[str], Optional[Row]]
AsyncLoader = Callable[[str], Awaitable[Optional[Row]]]


def render(v: Any) -> Optional[Union[str, bytes]]:
    """A column value as the worker writes it (None: no field): times as RFC
    3339 in UTC with the fraction they have (naive ones are UTC), dates
    ISO, booleans true/false, floats as the shortest plain decimal that reads
    back the same (1, 1.5, 0.1), integers and decimals plain, text and bytes
    as they are."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        s = format(decimal.Decimal(repr(v)), "f")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return s
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc)
        s = v.strftime("%Y-%m-%dT%H:%M:%S")
        if v.microsecond:
            s += ("." + "%06d" % v.microsecond).rstrip("0")
        return s + "Z"
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return str(v)


def render_row(row: Row) -> Dict[str, Union[str, bytes]]:
    out: Dict[str, Union[str, bytes]] = {}
    for k, v in row.items():
        r = render(v)
        if r is not None:
            out[str(k)] = r
    return out


def _text(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def _plain(fields: Mapping[str, Union[str, bytes]]) -> Dict[str, str]:
    return {k: _text(v) for k, v in fields.items()}


class Stats:
    """What the reads of one :class:`Cache` did, for metrics and tests."""

    __slots__ = ("hits", "loads", "fills", "refused", "waits", "shared", "gave_up")

    def __init__(self) -> None:
        self.hits = 0  # answered from Redis
        self.loads = 0  # loader calls (database queries)
        self.fills = 0  # fills written
        self.refused = 0  # fills refused by a fence (an invalidation won)
        self.waits = 0  # waits for another process's fill
        self.shared = 0  # gets answered by another get of this process
        self.gave_up = 0  # waits that ran out and read the database themselves

    def as_dict(self) -> Dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class _Spec:
    def __init__(self, redis: Any, cache: str, key: str, ttl: float, key_prefix: str, lease_ttl: float, max_wait: Optional[float], hot_sample: int, hot_max: int) -> None:
        why = _keys.check_cache_name(cache)
        if why:
            raise ValueError("cache: %s" % why)
        if ttl < 0.001:
            raise ValueError("ttl %r must be at least 1ms (use the cache's ttl)" % ttl)
        if lease_ttl < 0.01:
            raise ValueError("lease_ttl %r must be at least 10ms" % lease_ttl)
        self.cache = cache
        self.tmpl = Template("caches.%s.key" % cache, key)
        self.prefix = _keys.check_prefix(key_prefix)
        self.ttl_ms = int(ttl * 1000)
        self.lease_ms = int(lease_ttl * 1000)
        self.max_wait = lease_ttl if max_wait is None else max_wait
        self.hot_sample = hot_sample
        self.hot_max = hot_max
        self.cluster = type(redis).__name__ == "RedisCluster"
        self.stats = Stats()
        self._hits = 0
        self._touched: Dict[str, float] = {}

    def keys(self, id: str) -> Tuple[str, str, str, str, str]:
        k = self.tmpl.render(id)
        tag = ""
        if self.cluster:
            from redis.crc import key_slot

            tag = _keys.slot_tag(key_slot(k.encode()))
        p = self.prefix
        return k, _keys.lease(p, k), _keys.lease_wake(p, k), _keys.fence(p, k), _keys.cache_fence(p, self.cache, tag)

    def hot_key(self) -> str:
        return _keys.hot(self.prefix, self.cache)

    def should_touch(self, id: str) -> bool:
        if self.hot_sample <= 0:
            return False
        self._hits += 1
        if self._hits % self.hot_sample:
            return False
        now = time.monotonic()
        if now - self._touched.get(id, -10.0) < 1.0:
            return False
        if len(self._touched) > 10000:
            self._touched.clear()
        self._touched[id] = now
        return True

    def fill_args(self, token: str, stamp: Any, fields: Mapping[str, Union[str, bytes]]) -> list:
        args: list = [token, stamp, self.lease_ms, self.ttl_ms]
        for k, v in fields.items():
            args += [k, v]
        return args


def _id(id: Any) -> str:
    if isinstance(id, bool) or not isinstance(id, (str, int)):
        raise ValueError("id %r must be a string or an integer" % (id,))
    s = str(id)
    if s.strip() == "":
        raise ValueError("id must not be blank")
    return s


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Optional[Dict[str, str]] = None
        self.error: Optional[BaseException] = None


class Cache:
    """Reads one cache through leases on a synchronous redis-py client::

        users = Cache(r, "user", key="user:{id}", ttl=3600)
        row = users.get(42, lambda id: db.query_one("SELECT ... WHERE id = %s", id))

    ttl:        the cache's ttl (seconds), given to fills.
    lease_ttl:  how long a granted lease lives: longer than the slowest load.
    max_wait:   how long a get waits for another reader's fill before it
                reads the database itself, without filling (default lease_ttl).
    hot_sample: for caches with refresh_ahead on, record one hit in this
                many (at most once per id per second) so the worker rewarms
                read keys before they expire; 0 records none.
    """

    def __init__(
        self,
        redis: Any,
        cache: str,
        *,
        key: str,
        ttl: float,
        key_prefix: str = "",
        lease_ttl: float = 5.0,
        max_wait: Optional[float] = None,
        hot_sample: int = 0,
        hot_max: int = 10000,
    ) -> None:
        self._redis = redis
        self._s = _Spec(redis, cache, key, ttl, key_prefix, lease_ttl, max_wait, hot_sample, hot_max)
        self._mu = threading.Lock()
        self._flights: Dict[str, _Flight] = {}

    @property
    def stats(self) -> Stats:
        return self._s.stats

    def key(self, id: Any) -> str:
        return self._s.tmpl.render(_id(id))

    def get(self, id: Any, loader: Loader) -> Optional[Dict[str, str]]:
        """The cached object of id, loading it with ``loader(id)`` (a mapping
        of column to value, or None when there is no row) on a miss, under a
        lease. None when the row does not exist."""
        sid = _id(id)
        with self._mu:
            f = self._flights.get(sid)
            leader = f is None
            if leader:
                f = self._flights[sid] = _Flight()
        assert f is not None
        if not leader:
            self._s.stats.shared += 1
            f.done.wait()
            if f.error is not None:
                raise f.error
            return f.value
        try:
            f.value = self._fetch(sid, loader)
        except BaseException as e:
            f.error = e
            raise
        finally:
            with self._mu:
                del self._flights[sid]
            f.done.set()
        return f.value

    def _fetch(self, id: str, loader: Loader) -> Optional[Dict[str, str]]:
        s, r = self._s, self._redis
        k, lease, wake, fence, cfence = s.keys(id)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + s.max_wait
        while True:
            rep = _functions.fcall(r, _functions.GET, [k, lease, wake], [token, s.lease_ms])
            code = int(rep[0])
            if code == 1:
                s.stats.hits += 1
                h = rep[2]
                if s.should_touch(id):
                    _functions.fcall(r, _functions.TOUCH, [s.hot_key()], [id, s.hot_max])
                return {_text(h[i]): _text(h[i + 1]) for i in range(0, len(h), 2)}
            if code == 2:
                try:
                    s.stats.loads += 1
                    row = loader(id)
                except BaseException:
                    _functions.fcall(r, _functions.RELEASE, [lease, wake], [token])
                    raise
                if row is None:
                    _functions.fcall(r, _functions.RELEASE, [lease, wake], [token])
                    return None
                fields = render_row(row)
                st = int(_functions.fcall(r, _functions.FILL, [k, lease, wake, fence, cfence], s.fill_args(token, rep[1], fields)))
                if st == 1:
                    s.stats.fills += 1
                else:
                    s.stats.refused += 1
                return _plain(fields)
            left = deadline - time.monotonic()
            if left <= 0:
                s.stats.gave_up += 1
                s.stats.loads += 1
                row = loader(id)
                return None if row is None else _plain(render_row(row))
            s.stats.waits += 1
            wait = max(0.01, min(int(rep[1]) / 1000.0, left))
            r.blpop([wake], timeout=wait)


class AsyncCache:
    """:class:`Cache` on a ``redis.asyncio`` client, with an async loader;
    concurrent gets of one id in the event loop share one call::

        users = AsyncCache(r, "user", key="user:{id}", ttl=3600)
        row = await users.get(42, load_user)
    """

    def __init__(
        self,
        redis: Any,
        cache: str,
        *,
        key: str,
        ttl: float,
        key_prefix: str = "",
        lease_ttl: float = 5.0,
        max_wait: Optional[float] = None,
        hot_sample: int = 0,
        hot_max: int = 10000,
    ) -> None:
        self._redis = redis
        self._s = _Spec(redis, cache, key, ttl, key_prefix, lease_ttl, max_wait, hot_sample, hot_max)
        self._flights: Dict[str, "asyncio.Future[Optional[Dict[str, str]]]"] = {}  # tasks

    @property
    def stats(self) -> Stats:
        return self._s.stats

    def key(self, id: Any) -> str:
        return self._s.tmpl.render(_id(id))

    async def get(self, id: Any, loader: AsyncLoader) -> Optional[Dict[str, str]]:
        """:meth:`Cache.get` with an async loader. The load runs as a task of
        its own, shared by every concurrent get of id: a caller that is
        cancelled (its request ended) does not cancel the others'."""
        sid = _id(id)
        t = self._flights.get(sid)
        if t is None:
            t = asyncio.ensure_future(self._fetch(sid, loader))
            self._flights[sid] = t
            t.add_done_callback(lambda done: self._landed(sid, done))
        else:
            self._s.stats.shared += 1
        return await asyncio.shield(t)

    def _landed(self, sid: str, t: "asyncio.Future[Optional[Dict[str, str]]]") -> None:
        self._flights.pop(sid, None)
        if not t.cancelled():
            t.exception()  # retrieved, even when every caller was cancelled

    async def _fetch(self, id: str, loader: AsyncLoader) -> Optional[Dict[str, str]]:
        s, r = self._s, self._redis
        k, lease, wake, fence, cfence = s.keys(id)
        token = secrets.token_hex(16)
        deadline = time.monotonic() + s.max_wait
        while True:
            rep = await _functions.afcall(r, _functions.GET, [k, lease, wake], [token, s.lease_ms])
            code = int(rep[0])
            if code == 1:
                s.stats.hits += 1
                h = rep[2]
                if s.should_touch(id):
                    await _functions.afcall(r, _functions.TOUCH, [s.hot_key()], [id, s.hot_max])
                return {_text(h[i]): _text(h[i + 1]) for i in range(0, len(h), 2)}
            if code == 2:
                try:
                    s.stats.loads += 1
                    row = await loader(id)
                except BaseException:
                    await _functions.afcall(r, _functions.RELEASE, [lease, wake], [token])
                    raise
                if row is None:
                    await _functions.afcall(r, _functions.RELEASE, [lease, wake], [token])
                    return None
                fields = render_row(row)
                st = int(await _functions.afcall(r, _functions.FILL, [k, lease, wake, fence, cfence], s.fill_args(token, rep[1], fields)))
                if st == 1:
                    s.stats.fills += 1
                else:
                    s.stats.refused += 1
                return _plain(fields)
            left = deadline - time.monotonic()
            if left <= 0:
                s.stats.gave_up += 1
                s.stats.loads += 1
                row = await loader(id)
                return None if row is None else _plain(render_row(row))
            s.stats.waits += 1
            wait = max(0.01, min(int(rep[1]) / 1000.0, left))
            await r.blpop([wake], timeout=wait)
