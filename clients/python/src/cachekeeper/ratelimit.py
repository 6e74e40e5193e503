"""The sliding-window rate limiter of cachekeeper (Go: ``ratelimit.Limiter``),
on the same Redis function: trim, count, add and expire run as one atomic
step on the server's clock, with a member unique to each request.

The FastAPI guide's version (TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, EXPIRE as
separate calls, the second as member) lets a burst through (two requests
both read a count under the limit) and counts the requests of one second
once. This one allows exactly ``limit`` requests per window, from any number
of processes.

The sorted sets are in the layout the worker's ``ratelimit:prune`` job keeps
small (``rate_limits:`` in its configuration: key template, window, score
unit).
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any, Union

from . import _functions
from ._keys import Template

DEFAULT_KEY = "rate_limit:{client}"


class Result:
    """The outcome of one request: allowed (and counted), the limit, how many
    more fit now, and for a refused one the seconds until the oldest request
    leaves the window (for a Retry-After header)."""

    __slots__ = ("allowed", "limit", "remaining", "retry_after")

    def __init__(self, allowed: bool, limit: int, remaining: int, retry_after: float) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.retry_after = retry_after

    def __bool__(self) -> bool:
        return self.allowed

    def __repr__(self) -> str:
        return "Result(allowed=%s, limit=%d, remaining=%d, retry_after=%.3f)" % (self.allowed, self.limit, self.remaining, self.retry_after)


class _Config:
    def __init__(self, limit: int, window: Union[float, datetime.timedelta], key: str, score_unit: str) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError("ratelimit: limit %r must be a positive integer" % (limit,))
        w = window.total_seconds() if isinstance(window, datetime.timedelta) else float(window)
        if w < 0.001:
            raise ValueError("ratelimit: window %r must be at least 1ms" % (window,))
        if score_unit not in ("s", "ms"):
            raise ValueError('ratelimit: score_unit "%s" must be s or ms' % score_unit)
        self.limit = limit
        self.window_us = int(round(w * 1e6))
        self.unit_us = 1000000 if score_unit == "s" else 1000
        self.tmpl = Template("ratelimit: key", key)

    def args(self) -> list:
        return [self.limit, self.window_us, self.unit_us, secrets.token_hex(8)]

    def result(self, reply: Any) -> Result:
        allowed, remaining, retry_us = (int(x) for x in reply)
        return Result(allowed == 1, self.limit, remaining, retry_us / 1e6)


class Limiter:
    """At most ``limit`` requests per client in any ``window`` (seconds or a
    ``timedelta``), on a synchronous redis-py client::

        limiter = Limiter(r, limit=100, window=60)
        if not limiter.allow(client_ip):
            raise HTTPException(429)
    """

    def __init__(self, redis: Any, limit: int, window: Union[float, datetime.timedelta], *, key: str = DEFAULT_KEY, score_unit: str = "s") -> None:
        self._redis = redis
        self._c = _Config(limit, window, key, score_unit)

    def key(self, client: str) -> str:
        return self._c.tmpl.render(client)

    def allow(self, client: str) -> Result:
        """Count one request of client if it fits; the Result says whether."""
        return self._c.result(_functions.fcall(self._redis, _functions.RATELIMIT_ALLOW, [self.key(client)], self._c.args()))

    def reset(self, client: str) -> None:
        """Forget every request of client."""
        self._redis.delete(self.key(client))


class AsyncLimiter:
    """:class:`Limiter` on a ``redis.asyncio`` client."""

    def __init__(self, redis: Any, limit: int, window: Union[float, datetime.timedelta], *, key: str = DEFAULT_KEY, score_unit: str = "s") -> None:
        self._redis = redis
        self._c = _Config(limit, window, key, score_unit)

    def key(self, client: str) -> str:
        return self._c.tmpl.render(client)

    async def allow(self, client: str) -> Result:
        return self._c.result(await _functions.afcall(self._redis, _functions.RATELIMIT_ALLOW, [self.key(client)], self._c.args()))

    async def reset(self, client: str) -> None:
        await self._redis.delete(self.key(client))
