import asyncio
import queue
import threading
import time

import ckenv
from cachekeeper import AsyncSubscriber, Producer, Subscriber
from cachekeeper.events import TYPE_INVALIDATED, TYPE_MISSED

CH = "cachekeeper:events"


def _publish(r, typ="cache.invalidated", key="user:1"):
    r.publish(CH, '{"type":"%s","cache":"user","ids":["1"],"keys":["%s"],"key_count":1,"time":"2026-01-02T03:04:05.123456+00:00"}' % (typ, key))


class _Tail:
    """A Subscriber on a thread, handing over what it yields."""

    def __init__(self, client, **kw):
        self.q = queue.Queue()
        self.subscribed = threading.Semaphore(0)
        self.sub = Subscriber(client, CH, min_backoff=0.05, on_subscribed=self.subscribed.release, **kw)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.subscribed.acquire(timeout=10), "not subscribed within 10s"

    def _run(self):
        for ev in self.sub:
            self.q.put(ev)

    def next(self, timeout=10):
        return self.q.get(timeout=timeout)

    def close(self):
        self.sub.close()
        self.t.join(5)
        assert not self.t.is_alive(), "subscriber did not stop within 5s of close"


def test_gap_signal_after_the_connection_is_killed(r, redis_server):
    tail = _Tail(redis_server.client())
    try:
        _publish(r, key="user:1")
        ev = tail.next()
        assert ev.type == TYPE_INVALIDATED and ev.keys == ("user:1",) and not ev.missed
        assert ev.time.utcoffset().total_seconds() == 0 and ev.time.microsecond == 123456
        killed = r.client_kill_filter(_type="pubsub")
        assert killed >= 1
        _ = tail.subscribed.acquire(timeout=10)
        gap = tail.next()
        assert gap.type == TYPE_MISSED and gap.missed, gap
        _publish(r, key="user:2")
        ev = tail.next()
        assert ev.keys == ("user:2",) and not ev.missed
        assert tail.sub.reconnects == 1
        print("gap signal delivered after the subscriber's connection was killed; reconnects:", tail.sub.reconnects)
    finally:
        tail.close()


def test_gap_signal_after_redis_restarts_async():
    """A Redis restart (events published meanwhile are lost) yields the gap
    signal once the subscription is back, before any newer event."""
    srv = ckenv.RedisServer()
    got = []

    async def main():
        sub_client = srv.async_client()
        subscribed = asyncio.Event()
        sub = AsyncSubscriber(sub_client, CH, min_backoff=0.05, max_backoff=0.2, on_subscribed=subscribed.set)

        async def consume():
            async for ev in sub:
                got.append(ev)
                if len(got) == 3:
                    return

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(subscribed.wait(), 10)
        subscribed.clear()
        _publish(srv.client(), key="user:1")
        await _until(lambda: len(got) == 1)
        # Restart: same socket, a new server process.
        srv.proc.kill()
        srv.proc.wait(10)
        import os
        import subprocess

        os.unlink(srv.socket)
        srv.proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", srv.socket, "--save", "", "--dir", srv.dir], stdout=subprocess.DEVNULL)
        await asyncio.wait_for(subscribed.wait(), 20)
        ckenv.wait_until("restarted redis-server answers", srv._answers, 10)
        _publish(srv.client(), key="user:2")
        await asyncio.wait_for(task, 10)
        await sub_client.close()

    try:
        asyncio.run(main())
    finally:
        srv.stop()
    assert [e.type for e in got] == [TYPE_INVALIDATED, TYPE_MISSED, TYPE_INVALIDATED], got
    assert got[2].keys == ("user:2",)


async def _until(cond, timeout=10):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not met within %ss" % timeout
        await asyncio.sleep(0.01)


def test_events_of_a_real_worker(r, redis_server, worker):
    tail = _Tail(redis_server.client())
    try:
        r.hset("user:5", mapping={"id": 5})
        Producer(r).invalidate("user", [5, 6])
        ev = tail.next(20)
        assert ev.type == TYPE_INVALIDATED and ev.cache == "user" and set(ev.ids) == {"5", "6"}, ev
        assert set(ev.keys) == {"user:5", "user:6"} and ev.key_count == 2
    finally:
        tail.close()
