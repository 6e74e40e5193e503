"""The FastAPI guide's application on cachekeeper (see README.md for the two
side by side).

- reads go through leases: one database query per miss burst, across every
  process, and a fill that lost a race with an invalidation is refused;
- writes enqueue the worker's fenced invalidation (pattern 3) or
  invalidation plus rewarm (pattern 2, write-through done by the worker);
- sessions are the worker's layout, written atomically with their TTL;
- the rate-limited route uses the atomic sliding-window limiter;
- the pub/sub listener drops in-process copies on each event, and all of
  them after a gap (events lost while it was disconnected).

Run it beside a cachekeeper worker whose configuration has the guide's user
cache (key "user:{id}", ttl 1h); the worker loads the Redis functions the
reads and the limiter call.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Dict, Optional

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Request, Response

import cachekeeper
from db import Database


class Services:
    """What the routes depend on, built once per process."""

    def __init__(self, r: aioredis.Redis, db: Database, rate_limit: int, window: float) -> None:
        self.redis = r
        self.db = db
        self.jobs = cachekeeper.AsyncProducer(r, caches=["user"])
        self.users = cachekeeper.AsyncCache(r, "user", key="user:{id}", ttl=3600)
        self.limiter = cachekeeper.AsyncLimiter(r, limit=rate_limit, window=window)
        self.sessions = cachekeeper.AsyncSessionStore(r)
        self.local: Dict[str, Dict[str, str]] = {}  # in-process copies
        self.gaps = 0

    async def load_user(self, user_id: str) -> Optional[dict]:
        """The loader: the row in the cache's layout (the worker's by_ids
        query: id, email, full_name AS name)."""
        user = await self.db.get_user(int(user_id))
        if user is None:
            return None
        return {"id": user["id"], "email": user["email"], "name": user["full_name"]}

    async def listen(self) -> None:
        async for ev in cachekeeper.AsyncSubscriber(self.redis):
            if ev.missed or ev.capped:
                self.gaps += ev.missed
                self.local.clear()  # events may be lost: forget every copy
                continue
            for key in ev.keys:
                self.local.pop(key, None)


def create_app(redis_url: str, db: Database, *, rate_limit: int = 100, window: float = 60) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        r = aioredis.from_url(redis_url)
        app.state.ck = Services(r, db, rate_limit, window)
        listener = asyncio.create_task(app.state.ck.listen())
        yield
        listener.cancel()
        await r.close()

    app = FastAPI()
    app.router.lifespan_context = lifespan  # FastAPI(lifespan=...) from 0.93; Debian 12 has 0.92

    def services(request: Request) -> Services:
        return request.app.state.ck

    async def user_or_404(user_id: int, ck: Services = Depends(services)) -> Dict[str, str]:
        user = await ck.users.get(user_id, ck.load_user)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        return user

    async def rate_limited(request: Request, response: Response, ck: Services = Depends(services)) -> None:
        res = await ck.limiter.allow(request.client.host)
        if not res.allowed:
            raise HTTPException(status_code=429, detail="Rate limit exceeded. Try again later.", headers={"Retry-After": str(max(1, round(res.retry_after)))})
        response.headers["X-RateLimit-Remaining"] = str(res.remaining)

    # Pattern 1: cache-aside, through a lease.
    @app.get("/users/{user_id}")
    async def read_user(user: Dict[str, str] = Depends(user_or_404)):
        return user

    # In-process copies, kept right by the events listener.
    @app.get("/users/{user_id}/card")
    async def user_card(user_id: int, ck: Services = Depends(services)):
        key = ck.users.key(user_id)
        if key not in ck.local:
            ck.local[key] = await user_or_404(user_id, ck)
        return ck.local[key]

    # Pattern 2: write-through: the worker invalidates and rewarms (fenced).
    @app.put("/users/{user_id}")
    async def put_user(user_id: int, updates: dict, ck: Services = Depends(services)):
        user = await ck.db.update_user(user_id, updates)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        await ck.jobs.invalidate("user", [user_id], rewarm=True)
        return user

    # Pattern 3: invalidation (fenced, by the worker).
    @app.patch("/users/{user_id}")
    async def patch_user(user_id: int, updates: dict, ck: Services = Depends(services)):
        user = await ck.db.update_user(user_id, updates)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        await ck.jobs.invalidate("user", [user_id])
        return user

    @app.post("/login/{user_id}")
    async def login(user_id: int, ck: Services = Depends(services)):
        return {"token": await ck.sessions.create(user_id)}

    @app.get("/me")
    async def me(token: str, ck: Services = Depends(services)):
        s = await ck.sessions.get(token)
        if s is None:
            raise HTTPException(status_code=401, detail="not logged in")
        await ck.sessions.touch(token)
        return {"user_id": s.user_id, "created_at": s.created_at.isoformat()}

    @app.post("/logout")
    async def logout(token: str, ck: Services = Depends(services)):
        await ck.sessions.delete(token)
        return {"ok": True}

    @app.get("/api/data", dependencies=[Depends(rate_limited)])
    async def get_data():
        return {"data": "..."}

    return app


def from_env() -> FastAPI:
    """The app on $REDIS_URL and $DATABASE_URL: ``uvicorn --factory app:from_env``."""
    import os

    return create_app(os.environ["REDIS_URL"], Database(os.environ["DATABASE_URL"]))
