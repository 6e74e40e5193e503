"""Web sessions in the layout the worker's session jobs maintain (Go:
package ``session``): one hash per session, ``session:{token}``, holding
``user_id``, ``created_at`` and ``last_seen`` (ISO 8601, UTC, as the FastAPI
guide writes them) with a TTL; and one set of tokens per user,
``user:{user_id}:sessions``, so ``session:revoke`` finds every session of a
user without scanning.

Unlike the guide's HSET then EXPIRE, :meth:`SessionStore.create` writes the
hash and its TTL in one MULTI, so a crash between the two cannot leave an
immortal session; :meth:`SessionStore.touch` never recreates a session that
was deleted meanwhile.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any, Dict, Mapping, Optional

from ._keys import Template

DEFAULT_KEY = "session:{token}"
DEFAULT_INDEX = "user:{user_id}:sessions"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
"""How created_at and last_seen are written: Python's
``datetime.utcnow().isoformat()`` with microseconds, UTC without a zone."""


def now_text() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT)


def parse_time(s: str) -> datetime.datetime:
    """A session timestamp as applications write it (naive ISO 8601 taken as
    UTC, RFC 3339 with a zone, or Unix seconds), as an aware UTC datetime."""
    s = s.strip()
    try:
        f = float(s)
    except ValueError:
        pass
    else:
        return datetime.datetime.fromtimestamp(f, datetime.timezone.utc)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    t = datetime.datetime.fromisoformat(s.replace(" ", "T", 1))
    if t.tzinfo is None:
        return t.replace(tzinfo=datetime.timezone.utc)
    return t.astimezone(datetime.timezone.utc)


class Session:
    """One stored session; ``data`` holds the hash's other fields and
    ``ttl`` the remaining life in seconds (None without a TTL)."""

    __slots__ = ("token", "user_id", "created_at", "last_seen", "data", "ttl")

    def __init__(self, token: str, user_id: str, created_at: Optional[datetime.datetime], last_seen: Optional[datetime.datetime], data: Dict[str, str], ttl: Optional[float]) -> None:
        self.token = token
        self.user_id = user_id
        self.created_at = created_at
        self.last_seen = last_seen
        self.data = data
        self.ttl = ttl

    def __repr__(self) -> str:
        return "Session(user_id=%r, created_at=%s, last_seen=%s, data=%r)" % (self.user_id, self.created_at, self.last_seen, self.data)


class _Layout:
    def __init__(self, key: str, index: Optional[str], user_id_field: str, created_at_field: str, last_seen_field: str, ttl: float) -> None:
        self.key = Template("sessions.key", key)
        self.index = Template("sessions.index", index) if index else None
        names = [user_id_field, created_at_field, last_seen_field]
        if len(set(names)) != 3 or not all(names):
            raise ValueError("session field names %r must be distinct and not empty" % (names,))
        if ttl < 1:
            raise ValueError("session ttl %r must be at least 1 second" % ttl)
        self.user_id_field, self.created_at_field, self.last_seen_field = names
        self.ttl_ms = int(ttl * 1000)

    def fields(self, user_id: str, data: Optional[Mapping[str, str]]) -> Dict[str, str]:
        if str(user_id) == "":
            raise ValueError("session: user id must not be empty")
        now = now_text()
        out = {self.user_id_field: str(user_id), self.created_at_field: now, self.last_seen_field: now}
        for k, v in (data or {}).items():
            if k in out:
                raise ValueError('session: data field "%s" is reserved; rename it' % k)
            out[k] = str(v)
        return out

    def session(self, token: str, m: Mapping[Any, Any], pttl: int) -> Optional[Session]:
        if not m:
            return None
        d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in m.items()}
        user = d.pop(self.user_id_field, "")
        created = d.pop(self.created_at_field, None)
        seen = d.pop(self.last_seen_field, None)
        return Session(token, user, parse_time(created) if created else None, parse_time(seen) if seen else None, d, pttl / 1000 if pttl and pttl > 0 else None)


class SessionStore:
    """Create, read, touch and delete sessions on a synchronous redis-py
    client. The defaults are the FastAPI guide's layout and the worker's
    ``sessions:`` defaults; give the same values as the workers' config."""

    def __init__(
        self,
        redis: Any,
        *,
        key: str = DEFAULT_KEY,
        index: Optional[str] = DEFAULT_INDEX,
        user_id_field: str = "user_id",
        created_at_field: str = "created_at",
        last_seen_field: str = "last_seen",
        ttl: float = 86400,
    ) -> None:
        self._redis = redis
        self._l = _Layout(key, index, user_id_field, created_at_field, last_seen_field, ttl)

    def key(self, token: str) -> str:
        return self._l.key.render(token)

    def create(self, user_id: Any, data: Optional[Mapping[str, str]] = None) -> str:
        """Store a new session of user_id and return its token
        (``secrets.token_urlsafe(32)``)."""
        fields = self._l.fields(user_id, data)
        token = secrets.token_urlsafe(32)
        key = self.key(token)
        with self._redis.pipeline(transaction=True) as p:
            p.hset(key, mapping=fields)
            p.pexpire(key, self._l.ttl_ms)
            p.execute()
        if self._l.index is not None:
            try:
                self._redis.sadd(self._l.index.render(str(user_id)), token)
            except Exception:
                self._redis.delete(key)  # never leave a session revocation cannot find
                raise
        return token

    def get(self, token: str) -> Optional[Session]:
        """The session, or None."""
        key = self.key(token)
        with self._redis.pipeline(transaction=False) as p:
            p.hgetall(key)
            p.pttl(key)
            m, pttl = p.execute()
        return self._l.session(token, m, pttl)

    def touch(self, token: str) -> bool:
        """Record activity (last_seen, TTL renewed) atomically; False when the
        session is gone (it is not recreated)."""
        key = self.key(token)
        from redis.exceptions import WatchError

        for _ in range(50):
            with self._redis.pipeline(transaction=True) as p:
                try:
                    p.watch(key)
                    if not p.exists(key):
                        return False
                    p.multi()
                    p.hset(key, self._l.last_seen_field, now_text())
                    p.pexpire(key, self._l.ttl_ms)
                    p.execute()
                    return True
                except WatchError:
                    continue
        raise RuntimeError("session: touch %s: the key kept changing" % key)

    def delete(self, token: str) -> None:
        """Delete a session and its index entry (logout); a missing one is fine."""
        key = self.key(token)
        user = self._redis.hget(key, self._l.user_id_field)
        self._redis.delete(key)
        if user and self._l.index is not None:
            self._redis.srem(self._l.index.render(user.decode() if isinstance(user, bytes) else user), token)


class AsyncSessionStore:
    """:class:`SessionStore` on a ``redis.asyncio`` client."""

    def __init__(
        self,
        redis: Any,
        *,
        key: str = DEFAULT_KEY,
        index: Optional[str] = DEFAULT_INDEX,
        user_id_field: str = "user_id",
        created_at_field: str = "created_at",
        last_seen_field: str = "last_seen",
        ttl: float = 86400,
    ) -> None:
        self._redis = redis
        self._l = _Layout(key, index, user_id_field, created_at_field, last_seen_field, ttl)

    def key(self, token: str) -> str:
        return self._l.key.render(token)

    async def create(self, user_id: Any, data: Optional[Mapping[str, str]] = None) -> str:
        fields = self._l.fields(user_id, data)
        token = secrets.token_urlsafe(32)
        key = self.key(token)
        async with self._redis.pipeline(transaction=True) as p:
            p.hset(key, mapping=fields)
            p.pexpire(key, self._l.ttl_ms)
            await p.execute()
        if self._l.index is not None:
            try:
                await self._redis.sadd(self._l.index.render(str(user_id)), token)
            except Exception:
                await self._redis.delete(key)
                raise
        return token

    async def get(self, token: str) -> Optional[Session]:
        key = self.key(token)
        async with self._redis.pipeline(transaction=False) as p:
            p.hgetall(key)
            p.pttl(key)
            m, pttl = await p.execute()
        return self._l.session(token, m, pttl)

    async def touch(self, token: str) -> bool:
        key = self.key(token)
        from redis.exceptions import WatchError

        for _ in range(50):
            async with self._redis.pipeline(transaction=True) as p:
                try:
                    await p.watch(key)
                    if not await p.exists(key):
                        return False
                    p.multi()
                    p.hset(key, self._l.last_seen_field, now_text())
                    p.pexpire(key, self._l.ttl_ms)
                    await p.execute()
                    return True
                except WatchError:
                    continue
        raise RuntimeError("session: touch %s: the key kept changing" % key)

    async def delete(self, token: str) -> None:
        key = self.key(token)
        user = await self._redis.hget(key, self._l.user_id_field)
        await self._redis.delete(key)
        if user and self._l.index is not None:
            await self._redis.srem(self._l.index.render(user.decode() if isinstance(user, bytes) else user), token)
