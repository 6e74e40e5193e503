import asyncio
import datetime

import ckenv
from cachekeeper import AsyncSessionStore, Producer, SessionStore


def test_create_get_touch_delete(r):
    s = SessionStore(r, ttl=3600)
    tok = s.create(42, {"theme": "dark"})
    assert len(tok) == 43  # secrets.token_urlsafe(32), as the guide and Go's session.NewToken
    sess = s.get(tok)
    assert sess.user_id == "42" and sess.data == {"theme": "dark"}
    assert 3590 < sess.ttl <= 3600
    assert abs((datetime.datetime.now(datetime.timezone.utc) - sess.created_at).total_seconds()) < 5
    raw = r.hget("session:" + tok, "created_at").decode()
    assert datetime.datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S.%f")  # the guide's utcnow().isoformat() form
    assert r.smembers("user:42:sessions") == {tok.encode()}
    r.pexpire("session:" + tok, 1000)
    assert s.touch(tok) is True
    assert r.pttl("session:" + tok) > 3_000_000
    s.delete(tok)
    assert s.get(tok) is None and r.smembers("user:42:sessions") == set()
    assert s.touch(tok) is False and r.exists("session:" + tok) == 0, "touch must not recreate a deleted session"


def test_async_store(redis_server):
    async def main():
        c = redis_server.async_client()
        s = AsyncSessionStore(c, ttl=60)
        tok = await s.create("u1")
        got = await s.get(tok)
        touched = await s.touch(tok)
        await s.delete(tok)
        gone = await s.get(tok)
        await c.close()
        return got, touched, gone

    got, touched, gone = asyncio.run(main())
    assert got.user_id == "u1" and touched and gone is None


def test_the_workers_revoke_finds_python_sessions(r, worker):
    """Sessions written by the Python store are in the worker's layout: its
    session:revoke job deletes every session of the user, and only those."""
    s = SessionStore(r)
    mine = [s.create(7) for _ in range(3)]
    other = s.create(8)
    Producer(r).revoke_sessions(7)
    ckenv.wait_until("sessions revoked", lambda: all(s.get(t) is None for t in mine))
    assert s.get(other) is not None
    assert r.exists("user:7:sessions") == 0 or r.scard("user:7:sessions") == 0


def test_the_workers_cleanup_reads_python_timestamps(r, worker):
    """The worker's session:cleanup reads last_seen as the store writes it:
    an idle session goes, a fresh one stays."""
    from cachekeeper.session import TIME_FORMAT

    s = SessionStore(r)
    idle, fresh = s.create(1), s.create(2)
    three_hours_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    r.hset(s.key(idle), "last_seen", three_hours_ago.strftime(TIME_FORMAT))
    Producer(r).cleanup_sessions(pattern="session:*", idle_timeout="2h")
    ckenv.wait_until("idle session cleaned up", lambda: s.get(idle) is None)
    ckenv.quiet(r)
    assert s.get(fresh) is not None
