"""The guide's application and its cachekeeper version, driven through
FastAPI's TestClient against a private redis-server, a real worker and a
PostgreSQL schema. The comparisons print what each version did."""

import threading
import time

import ckenv
import guide_app
from fastapi.testclient import TestClient

import app as ck_app
from cachekeeper import Producer


def burst(client, n, method, path, **kw):
    """n requests at once from n threads; returns the responses."""
    start = threading.Barrier(n)
    out = [None] * n

    def go(i):
        start.wait()
        out[i] = client.request(method, path, **kw)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def names(conn, ids):
    with conn.cursor() as c:
        c.execute("SELECT id, full_name FROM users WHERE id = ANY(%s)", (list(ids),))
        return {str(i): n for i, n in c.fetchall()}


def test_routes(r, redis_server, db, users, worker, functions):
    with TestClient(ck_app.create_app(redis_server.url, db)) as c:
        assert c.get("/users/1").json() == {"id": "1", "email": "user1@example.com", "name": "User 1"}
        assert r.hgetall("user:1") == {"id": "1", "email": "user1@example.com", "name": "User 1"}
        assert c.get("/users/99999").status_code == 404
        # Pattern 3: the worker invalidates; the next read loads the new row.
        assert c.patch("/users/1", json={"full_name": "Ada"}).status_code == 200
        ckenv.wait_until("invalidated", lambda: r.exists("user:1") == 0)
        assert c.get("/users/1").json()["name"] == "Ada"
        # Pattern 2: the worker invalidates and rewarms.
        assert c.put("/users/2", json={"full_name": "Grace"}).status_code == 200
        ckenv.wait_until("rewarmed", lambda: r.hget("user:2", "name") == "Grace")
        # Sessions.
        tok = c.post("/login/7").json()["token"]
        assert c.get("/me", params={"token": tok}).json()["user_id"] == "7"
        assert r.smembers("user:7:sessions") == {tok}
        c.post("/logout", params={"token": tok})
        assert c.get("/me", params={"token": tok}).status_code == 401
        # The rate-limited route.
        resp = c.get("/api/data")
        assert resp.status_code == 200 and resp.headers["X-RateLimit-Remaining"] == "99"


def test_database_queries_per_burst(r, redis_server, db, users, functions):
    """200 concurrent reads of a user whose key just expired, the query
    taking 50 ms: the guide's cache-aside sends one query per request that
    missed; the lease sends one."""
    db.read_delay = 0.05
    got = {}
    for name, make in (("guide", guide_app.create_app), ("cachekeeper", ck_app.create_app)):
        r.delete("user:42")
        with TestClient(make(redis_server.url, db)) as c:
            db.queries = 0
            t0 = time.monotonic()
            resps = burst(c, 200, "GET", "/users/42")
            took = time.monotonic() - t0
        assert all(x.status_code == 200 and x.json()["name"] == "User 42" for x in resps)
        got[name] = db.queries
        print("%-12s 200 concurrent reads of a missing key: %3d database queries (%.2fs)" % (name, db.queries, took))
    assert got["cachekeeper"] == 1


def test_stale_keys_after_racing_writes(r, redis_server, db, users, worker, functions):
    """For each of 200 users, a read misses and loads the row while a write
    updates it and invalidates the key (pattern 3); the read's fill comes
    50 ms after its query. Counted once everything is quiet: keys holding a
    row the database no longer has."""
    db.read_delay = 0.05
    stale = {}
    for name, make, ids in (("guide", guide_app.create_app, range(101, 301)), ("cachekeeper", ck_app.create_app, range(301, 501))):
        application = make(redis_server.url, db)
        with TestClient(application) as c:

            def reader(i):
                c.get("/users/%d" % i)

            def writer(i):
                time.sleep(0.01)
                c.patch("/users/%d" % i, json={"full_name": "Renamed %d" % i})

            threads = [threading.Thread(target=f, args=(i,)) for i in ids for f in (reader, writer)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            ckenv.quiet(r)
            time.sleep(0.3)
        want = names(users, ids)
        cached = {str(i): r.hget("user:%d" % i, "name") for i in ids}
        stale[name] = sum(1 for i, n in cached.items() if n is not None and n != want[i])
        refused = application.state.ck.users.stats.refused if name == "cachekeeper" else 0
        print("%-12s %d racing read/write pairs: %3d keys left stale for the TTL (fills refused by a fence: %d)" % (name, len(ids), stale[name], refused))
    assert stale["cachekeeper"] == 0


def test_limiter_accuracy(r, redis_server, db, functions):
    """150 requests at 100 per 60 s, all at once and one after another."""
    allowed = {}
    for name, make in (("guide", guide_app.create_app), ("cachekeeper", ck_app.create_app)):
        with TestClient(make(redis_server.url, db)) as c:
            r.delete("rate_limit:testclient")
            together = sum(x.status_code == 200 for x in burst(c, 150, "GET", "/api/data"))
            r.delete("rate_limit:testclient")
            in_turn = sum(c.get("/api/data").status_code == 200 for _ in range(150))
        allowed[name] = (together, in_turn)
        print("%-12s limit 100/60s: %3d of 150 concurrent requests allowed, %3d of 150 sequential" % (name, together, in_turn))
    assert allowed["cachekeeper"] == (100, 100)


def test_local_copies_after_a_subscriber_outage(r, redis_server, db, users, worker, functions):
    """Each app keeps in-process copies of 20 users and drops them on the
    worker's events. Its Redis connections are cut for a second while
    another instance renames the 20 users and the worker invalidates them:
    the events are lost. Counted: copies still stale once it reconnected."""
    ids = list(range(601, 621))
    stale = {}
    for name, make in (("guide", guide_app.create_app), ("cachekeeper", ck_app.create_app)):
        proxy = ckenv.Proxy(redis_server.socket)
        try:
            application = make(proxy.url, db)
            with TestClient(application) as c:
                for i in ids:
                    assert c.get("/users/%d/card" % i).status_code == 200
                time.sleep(0.3)  # subscribed
                proxy.cut(1.0)
                with users.cursor() as cur:
                    cur.execute("UPDATE users SET full_name = %s || id WHERE id = ANY(%s)", (name + " renamed ", ids))
                Producer(r).invalidate("user", ids)
                ckenv.quiet(r)
                time.sleep(2.0)  # the outage ends; both listeners reconnect
                want = names(users, ids)
                cards = {str(i): c.get("/users/%d/card" % i).json()["name"] for i in ids}
        finally:
            proxy.close()
        stale[name] = sum(1 for i in cards if cards[i] != want[i])
        print("%-12s subscriber cut for 1s while 20 users changed: %2d of 20 in-process copies stale afterwards" % (name, stale[name]))
    assert stale["cachekeeper"] == 0
