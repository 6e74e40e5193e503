"""cachekeeper for Python applications: enqueue the worker's jobs, read
cached objects through leases, limit request rates, keep sessions, and hear
what the worker changed.

Everything here speaks to the same Redis as the cachekeeper worker, in the
same layout and with the same checks as the Go packages; it needs only
redis-py (4.3 or later), and each class has a ``redis.asyncio`` twin::

    import redis, cachekeeper

    r = redis.Redis()
    jobs = cachekeeper.Producer(r)
    jobs.invalidate("user", [42])                   # fenced delete, by the worker
    users = cachekeeper.Cache(r, "user", key="user:{id}", ttl=3600)
    row = users.get(42, load_user)                   # one database query per miss burst
    limiter = cachekeeper.Limiter(r, limit=100, window=60)
    limiter.allow("203.0.113.7").allowed
"""

from .entry import Options
from .errors import CachekeeperError, FieldError, FunctionMissing, InvalidPayload, UnknownName
from .events import AsyncSubscriber, Event, Subscriber
from .kinds import Kind, own_kind
from .producer import AsyncProducer, Batch, DeadLetter, Producer
from .ratelimit import AsyncLimiter, Limiter, Result
from .read import AsyncCache, Cache, render
from .session import AsyncSessionStore, Session, SessionStore

__version__ = "0.1.0"

__all__ = [
    "AsyncCache",
    "AsyncLimiter",
    "AsyncProducer",
    "AsyncSessionStore",
    "AsyncSubscriber",
    "Batch",
    "Cache",
    "CachekeeperError",
    "DeadLetter",
    "Event",
    "FieldError",
    "FunctionMissing",
    "InvalidPayload",
    "Kind",
    "Limiter",
    "Options",
    "Producer",
    "Result",
    "Session",
    "SessionStore",
    "Subscriber",
    "UnknownName",
    "own_kind",
    "render",
]
