"""The FastAPI guide's application, as the guide writes it (the baseline of
the measurements). Only what the guide leaves abstract is filled in: aioredis
is redis.asyncio (aioredis was merged into redis-py), ``db.get(User, id)`` is
:class:`db.Database`, and the pub/sub listener, which the guide names but
does not show, is the usual subscribe-and-listen loop that reconnects on
error."""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Dict, Optional

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Request

from db import Database


def create_app(redis_url: str, db: Database) -> FastAPI:
    redis_client: Optional[aioredis.Redis] = None
    local: Dict[str, dict] = {}  # in-process copies, dropped on events

    async def get_redis() -> aioredis.Redis:
        return redis_client

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal redis_client
        redis_client = aioredis.from_url(redis_url, encoding="utf-8", decode_responses=True)
        task = asyncio.create_task(listener())
        yield
        task.cancel()
        await redis_client.close()

    app = FastAPI()
    app.router.lifespan_context = lifespan  # FastAPI(lifespan=...) from 0.93; Debian 12 has 0.92
    app.state.local = local

    # Pattern 1: cache-aside.
    async def get_user_cached(user_id: int):
        redis = await get_redis()
        cache_key = f"user:{user_id}"
        cached_user = await redis.hgetall(cache_key)
        if cached_user:
            return cached_user
        user = await db.get_user(user_id)
        if not user:
            return None
        await redis.hset(cache_key, mapping={"id": str(user["id"]), "email": user["email"], "name": user["full_name"]})
        await redis.expire(cache_key, 3600)
        return {"id": str(user["id"]), "email": user["email"], "name": user["full_name"]}

    # Pattern 2: write-through.
    async def update_user_with_cache(user_id: int, updates: dict):
        redis = await get_redis()
        cache_key = f"user:{user_id}"
        user = await db.update_user(user_id, updates)
        await redis.hset(cache_key, mapping={"id": str(user["id"]), "email": user["email"], "name": user["full_name"]})
        await redis.expire(cache_key, 3600)
        return user

    # Pattern 3: invalidation.
    async def invalidate_user_cache(user_id: int):
        redis = await get_redis()
        await redis.delete(f"user:{user_id}")

    async def update_user_invalidate_cache(user_id: int, updates: dict):
        user = await db.update_user(user_id, updates)
        await invalidate_user_cache(user_id)
        return user

    async def rate_limit(key: str, limit: int, window: int) -> bool:
        redis = await get_redis()
        now = await redis.time()
        current_time = now[0]
        window_start = current_time - window
        await redis.zremrangebyscore(key, 0, window_start)
        count = await redis.zcard(key)
        if count < limit:
            await redis.zadd(key, {str(current_time): current_time})
            await redis.expire(key, window)
            return True
        return False

    async def create_session(user_id: int) -> str:
        redis = await get_redis()
        session_token = secrets.token_urlsafe(32)
        session_key = f"session:{session_token}"
        await redis.hset(session_key, mapping={"user_id": str(user_id), "created_at": datetime.utcnow().isoformat()})
        await redis.expire(session_key, 86400)
        return session_token

    async def get_session(session_token: str) -> Optional[dict]:
        redis = await get_redis()
        session_data = await redis.hgetall(f"session:{session_token}")
        return session_data if session_data else None

    async def delete_session(session_token: str):
        redis = await get_redis()
        await redis.delete(f"session:{session_token}")

    async def listener():
        while True:
            try:
                pubsub = redis_client.pubsub()
                await pubsub.subscribe("cachekeeper:events")
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        for key in json.loads(message["data"]).get("keys", []):
                            local.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.1)  # reconnect

    @app.get("/users/{user_id}")
    async def read_user(user_id: int):
        user = await get_user_cached(user_id)
        if user is None:
            raise HTTPException(status_code=404, detail="no such user")
        return user

    @app.get("/users/{user_id}/card")
    async def user_card(user_id: int):
        key = f"user:{user_id}"
        if key not in local:
            user = await get_user_cached(user_id)
            if user is None:
                raise HTTPException(status_code=404, detail="no such user")
            local[key] = user
        return local[key]

    @app.put("/users/{user_id}")
    async def put_user(user_id: int, updates: dict):
        return await update_user_with_cache(user_id, updates)

    @app.patch("/users/{user_id}")
    async def patch_user(user_id: int, updates: dict):
        return await update_user_invalidate_cache(user_id, updates)

    @app.post("/login/{user_id}")
    async def login(user_id: int):
        return {"token": await create_session(user_id)}

    @app.get("/me")
    async def me(token: str):
        s = await get_session(token)
        if s is None:
            raise HTTPException(status_code=401, detail="not logged in")
        return s

    @app.post("/logout")
    async def logout(token: str):
        await delete_session(token)
        return {"ok": True}

    @app.get("/api/data")
    async def get_data(request: Request, redis: aioredis.Redis = Depends(get_redis)):
        client_ip = request.client.host
        key = f"rate_limit:{client_ip}"
        if not await rate_limit(key, limit=100, window=60):
            raise HTTPException(status_code=429, detail="Rate limit exceeded. Try again later.")
        return {"data": "..."}

    return app
