import asyncio
import threading

import pytest

from cachekeeper import AsyncLimiter, FunctionMissing, Limiter


def test_missing_library_says_what_to_do(r):
    r.function_flush()  # FLUSHALL keeps functions; later tests load them again
    with pytest.raises(FunctionMissing, match="start a cachekeeper worker"):
        Limiter(r, limit=1, window=1).allow("x")


def test_exactly_the_limit_under_concurrent_requests(r, redis_server, functions):
    """150 requests from 30 threads, each with its own connection, at 100 per
    minute: exactly 100 are allowed (the guide's check-then-add lets all
    150 through, see examples/fastapi)."""
    results = []
    lock = threading.Lock()
    start = threading.Barrier(30)

    def client():
        lim = Limiter(redis_server.client(), limit=100, window=60)
        start.wait()
        for _ in range(5):
            res = lim.allow("203.0.113.7")
            with lock:
                results.append(res)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    allowed = [x for x in results if x.allowed]
    refused = [x for x in results if not x.allowed]
    print("150 concurrent requests at 100/60s: %d allowed, %d refused" % (len(allowed), len(refused)))
    assert len(results) == 150 and len(allowed) == 100
    assert r.zcard("rate_limit:203.0.113.7") == 100, "every allowed request has its own member"
    assert all(0 < x.retry_after <= 60 for x in refused)
    assert sorted(x.remaining for x in allowed) == list(range(100))


def test_async_limiter_under_a_burst(redis_server, functions):
    async def main():
        c = redis_server.async_client()
        lim = AsyncLimiter(c, limit=20, window=1.5, score_unit="ms")
        first = await asyncio.gather(*[lim.allow("k") for _ in range(50)])
        await asyncio.sleep(1.6)
        later = await lim.allow("k")
        await c.close()
        return first, later

    first, later = asyncio.run(main())
    assert sum(x.allowed for x in first) == 20
    assert later.allowed, "the window slid: requests are allowed again"


def test_bad_settings(r):
    for kw in ({"limit": 0, "window": 1}, {"limit": 1, "window": 0}, {"limit": 1, "window": 1, "score_unit": "us"}, {"limit": 1, "window": 1, "key": "rl:{a}:{b}"}):
        with pytest.raises(ValueError):
            Limiter(r, **kw)
