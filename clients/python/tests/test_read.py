import asyncio
import threading
import time

import ckenv
from cachekeeper import AsyncCache, Cache, Producer, render


def test_render_is_the_workers():
    import datetime
    import decimal

    assert render(1.0) == "1" and render(1.5) == "1.5" and render(0.1) == "0.1" and render(1e21) == "1000000000000000000000"
    assert render(True) == "true" and render(7) == "7" and render(decimal.Decimal("12.50")) == "12.50"
    assert render(datetime.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    assert render(datetime.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))) == "2026-01-02T01:04:05.25Z"
    assert render(datetime.date(2026, 1, 2)) == "2026-01-02" and render(None) is None


def _loader(pg, calls, lock, pause=0.05):
    conn = pg.connect()

    def load(id):
        with lock:
            calls.append(id)
        time.sleep(pause)
        with conn.cursor() as c:  # psycopg2 connections are thread-safe
            c.execute("SELECT id, email, full_name AS name FROM users WHERE id = %s", (int(id),))
            row = c.fetchone()
        return None if row is None else {"id": row[0], "email": row[1], "name": row[2]}

    return load


def test_one_query_per_burst_across_processes(r, redis_server, pg, functions):
    """200 concurrent readers of one missing key, spread over 4 Cache
    instances (4 processes' worth, each with its own connection pool):
    one database query; every reader gets the row."""
    calls, lock = [], threading.Lock()
    load = _loader(pg, calls, lock)
    caches = [Cache(redis_server.client(), "user", key="user:{id}", ttl=3600) for _ in range(4)]
    results = []
    start = threading.Barrier(200)

    def reader(i):
        start.wait()
        results.append(caches[i % 4].get(42, load))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(200)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    took = time.monotonic() - t0
    stats = [c.stats.as_dict() for c in caches]
    print("200 readers of a missing key: %d database queries in %.3fs; per instance: %s" % (len(calls), took, stats))
    assert len(calls) == 1
    assert len(results) == 200 and all(x == {"id": "42", "email": "user42@example.com", "name": "User 42"} for x in results)
    assert r.hgetall("user:42") == {b"id": b"42", b"email": b"user42@example.com", b"name": b"User 42"}
    assert 3590_000 < r.pttl("user:42") <= 3600_000


def test_fill_after_an_invalidation_is_refused(r, redis_server, pg, config, functions):
    """The row changes and the worker invalidates the key while the lease
    holder is reading the old row: the stale fill never lands."""
    conn = pg.connect()
    w = ckenv.Worker(config)
    try:
        cache = Cache(redis_server.client(), "user", key="user:{id}", ttl=3600)
        p = Producer(r)
        seen = threading.Event()

        def slow_old_read(id):
            row = {"id": 7, "email": "user7@example.com", "name": "User 7"}  # what the database said before the update
            with conn.cursor() as c:
                c.execute("UPDATE users SET full_name = 'Seven' WHERE id = 7")
            p.invalidate("user", [7])
            ckenv.wait_until("invalidated by the worker", lambda: r.exists("cachekeeper:fence:{user:7}") == 1)
            seen.set()
            return row

        got = cache.get(7, slow_old_read)
        assert seen.is_set() and got["name"] == "User 7"
        assert cache.stats.refused == 1 and cache.stats.fills == 0
        assert r.exists("user:7") == 0, "the stale row must not be cached"
        again = cache.get(7, _loader(pg, [], threading.Lock(), 0))
        assert again["name"] == "Seven" and r.hget("user:7", "name") == b"Seven"
    finally:
        w.stop()
        with conn.cursor() as c:
            c.execute("UPDATE users SET full_name = 'User 7' WHERE id = 7")
        conn.close()


def test_async_single_flight(redis_server, functions):
    calls = []

    async def load(id):
        calls.append(id)
        await asyncio.sleep(0.05)
        return {"id": int(id), "score": 1.5, "missing": None}

    async def main():
        c = redis_server.async_client()
        cache = AsyncCache(c, "user", key="user:{id}", ttl=60)
        out = await asyncio.gather(*[cache.get(9, load) for _ in range(100)])
        hit = await cache.get(9, load)
        none = await cache.get(10, lambda id: _none())
        await c.close()
        return out, hit, none, cache.stats

    async def _none():
        return None

    out, hit, none, stats = asyncio.run(main())
    assert calls == ["9"] and all(x == {"id": "9", "score": "1.5"} for x in out) and hit == out[0]
    assert none is None and stats.shared == 99 and stats.hits == 1


def test_async_cancelled_request_does_not_cancel_the_others(redis_server, functions):
    calls = []

    async def load(id):
        calls.append(id)
        await asyncio.sleep(0.1)
        return {"id": int(id)}

    async def main():
        c = redis_server.async_client()
        cache = AsyncCache(c, "user", key="user:{id}", ttl=60)
        first = asyncio.ensure_future(cache.get(11, load))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(cache.get(11, load))
        await asyncio.sleep(0.01)
        first.cancel()
        got = await asyncio.wait_for(second, 5)
        cached = await c.hgetall("user:11")
        await c.close()
        return first.cancelled(), got, cached

    cancelled, got, cached = asyncio.run(main())
    assert cancelled and got == {"id": "11"} and cached == {b"id": b"11"} and calls == ["11"]
