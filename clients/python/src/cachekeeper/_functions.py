"""Calls of the ``cachekeeper_v1`` Redis function library by name.

The worker loads the library on start (``cachekeeper functions load`` does
it by hand; docs/read-protocol.md describes every function). This package
carries no Lua: it sends ``FCALL`` and turns a missing library into a
:class:`~cachekeeper.errors.FunctionMissing` that says what to do.
"""

from __future__ import annotations

from typing import Any, Sequence

from .errors import FunctionMissing

LIBRARY = "cachekeeper_v1"
GET = "ck1_get"
FILL = "ck1_fill"
RELEASE = "ck1_release"
TOUCH = "ck1_touch"
RATELIMIT_ALLOW = "ck1_ratelimit_allow"
VERSION = "ck1_version"


def translate(name: str, e: Exception) -> Exception:
    """The error to raise for a failed FCALL of name."""
    text = str(e)
    if "Function not found" in text:
        return FunctionMissing(
            "Redis has no function %s (library %s): start a cachekeeper worker against this Redis, "
            "which loads it, or run `cachekeeper functions load`" % (name, LIBRARY)
        )
    if "unknown command" in text.lower():
        return FunctionMissing("Redis does not know FCALL: cachekeeper's functions need Redis 7 or later")
    return e


def fcall(redis: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    from redis.exceptions import ResponseError

    try:
        return redis.fcall(name, len(keys), *keys, *args)
    except ResponseError as e:
        raise translate(name, e) from None


async def afcall(redis: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    from redis.exceptions import ResponseError

    try:
        return await redis.fcall(name, len(keys), *keys, *args)
    except ResponseError as e:
        raise translate(name, e) from None
