import asyncio
import datetime
import json
import time

import pytest

import ckenv
from cachekeeper import AsyncProducer, FieldError, InvalidPayload, Options, Producer, UnknownName, own_kind

# (method, args, kwargs, the field the refusal names)
BAD = [
    ("warm", ("user", []), {}, "ids"),
    ("warm", ("user", [1, " "]), {}, "ids[1]"),
    ("warm", ("user", [1.5]), {}, "ids[0]"),
    ("warm", ("us er", [1]), {}, "cache"),
    ("warm", ("user", "42"), {}, "ids"),
    ("invalidate", ("", [1]), {}, "cache"),
    ("invalidate", ("user", [True]), {}, "ids[0]"),
    ("invalidate_keys", (["page:1", "cachekeeper:inbox"],), {}, "keys[1]"),
    ("invalidate_keys", (["asynq:{default}:pending"],), {}, "keys[0]"),
    ("invalidate_pattern", ("*",), {}, "pattern"),
    ("invalidate_pattern", ("{cachekeeper:inbox}*",), {}, "pattern"),
    ("invalidate_pattern", ("user:*",), {"max_keys_per_second": -1}, "max_keys_per_second"),
    ("invalidate_tag", ("",), {}, "tag"),
    ("warm_all", ("user",), {"max_keys_per_second": -3}, "max_keys_per_second"),
    ("cleanup_sessions", (), {"max_age": "2 hours"}, "max_age"),
    ("cleanup_sessions", (), {"idle_timeout": -5}, "idle_timeout"),
    ("cleanup_sessions", (), {"pattern": "*"}, "pattern"),
    ("revoke_sessions", ("",), {}, "user_id"),
    ("prune_rate_limits", (), {"window": "-1m"}, "window"),
    ("publish", ("", "x"), {}, "channel"),
    ("publish", ("c", 42), {}, "message"),
    ("publish", ("c", "x"), {"options": Options(max_retry=-1)}, "options.max_retry"),
    ("publish", ("c", "x"), {"options": Options(timeout=0)}, "options.timeout"),
    ("publish", ("c", "x"), {"options": Options(process_in="soon")}, "options.process_in"),
    ("publish", ("c", "x"), {"options": Options(process_at=datetime.datetime(2030, 1, 1))}, "options.process_at"),
    ("publish", ("c", "x"), {"options": Options(process_in=5, process_at=datetime.datetime.now(datetime.timezone.utc))}, "options.process_in"),
    ("publish", ("c", "x"), {"options": Options(task_id=" id")}, "options.task_id"),
    ("warm", ("user", list(range(1500))), {"options": Options(task_id="one")}, "options.task_id"),
    ("publish", ("c", "x"), {"options": Options(traceparent="00-xyz")}, "traceparent"),
    ("publish", ("c", "x"), {"options": Options(tracestate="k=v")}, "tracestate"),
]


@pytest.mark.parametrize("method,args,kwargs,field", BAD, ids=["%s-%s" % (b[0], b[3]) for b in BAD])
def test_bad_input_names_the_field_and_sends_nothing(r, method, args, kwargs, field):
    p = Producer(r)
    with pytest.raises(FieldError) as e:
        getattr(p, method)(*args, **kwargs)
    assert e.value.field == field
    assert '"%s"' % field in str(e.value), str(e.value)
    assert r.llen(p.inbox_key) == 0
    print("refused:", e.value)


def test_bad_input_async_names_the_field(redis_server):
    async def main():
        r = redis_server.async_client()
        p = AsyncProducer(r)
        for method, args, kwargs, field in BAD:
            with pytest.raises(FieldError) as e:
                await getattr(p, method)(*args, **kwargs)
            assert e.value.field == field
        n = await r.llen(p.inbox_key)
        await r.close()
        return n

    assert asyncio.run(main()) == 0


def test_unknown_names_are_refused_when_the_workers_names_are_given(r):
    p = Producer(r, queues=["critical", "default", "low"], caches=["user"])
    with pytest.raises(UnknownName, match='cache "usr" is not configured'):
        p.invalidate("usr", [1])
    with pytest.raises(UnknownName, match='queue "urgent" is not served'):
        p.invalidate("user", [1], options=Options(queue="urgent"))
    with pytest.raises(InvalidPayload, match='unknown kind "cache:warmup"'):
        p.enqueue("cache:warmup", {"cache": "user"})
    assert r.llen(p.inbox_key) == 0


def test_many_ids_per_entry_in_one_round_trip(r):
    p = Producer(r)
    before = _calls(r, "lpush")
    assert p.invalidate("user", list(range(1, 2501))) == 3
    assert _calls(r, "lpush") - before == 1
    entries = [json.loads(e) for e in r.lrange(p.inbox_key, 0, -1)]
    assert sorted(len(e["args"]["ids"]) for e in entries) == [500, 1000, 1000]
    with p.batch() as b:
        b.warm("user", [1, 2])
        b.publish("orders", "42")
        b.invalidate_tag("org:7")
    assert _calls(r, "lpush") - before == 2
    assert r.llen(p.inbox_key) == 6


def test_own_kind(r):
    p = Producer(r)

    def check(args):
        if not isinstance(args.get("name"), str) or not args["name"]:
            raise FieldError("example:greet", "name", "must be a non-empty string")

    p.register(own_kind("example:greet", validate=check))
    with pytest.raises(FieldError, match='"name"'):
        p.enqueue("example:greet", {"name": ""})
    p.enqueue("example:greet", {"name": "Ada"}, Options(queue="default"))
    assert json.loads(r.lpop(p.inbox_key)) == {"kind": "example:greet", "args": {"name": "Ada"}, "options": {"queue": "default"}}
    with pytest.raises(InvalidPayload):
        own_kind("cache:warm")


def _calls(r, cmd):
    return r.info("commandstats").get("cmdstat_" + cmd, {}).get("calls", 0)


def _user_keys(r, n):
    with r.pipeline(transaction=False) as p:
        for i in range(1, n + 1):
            p.hset("user:%d" % i, mapping={"id": i, "email": "old", "name": "old"})
        p.execute()


def test_worker_down_entries_wait_and_nothing_is_lost(r, config):
    """Entries pushed while no worker runs wait in the list; a worker started
    later applies every one of them."""
    n = 20000
    _user_keys(r, n)
    p = Producer(r)
    t0 = time.monotonic()
    pushed = p.invalidate("user", list(range(1, n + 1)))
    push_s = time.monotonic() - t0
    assert pushed == 20
    time.sleep(0.5)
    assert r.llen(p.inbox_key) == 20, "entries must wait while no worker runs"
    assert r.dbsize() == n + 1
    w = ckenv.Worker(config)
    try:
        took = ckenv.wait_until("every key invalidated", lambda: len(r.keys("user:*")) == 0, 60, 0.05)
        assert r.llen(p.inbox_key) == 0
        assert r.llen("{cachekeeper:inbox}:dead") == 0, r.lrange("{cachekeeper:inbox}:dead", 0, -1)
    finally:
        w.stop()
    print("pushed %d ids in %d entries in %.3fs; a worker started afterwards invalidated all in %.2fs (%.0f keys/s)" % (n, pushed, push_s, took, n / took))


def test_warm_through_the_worker_writes_the_rows(r, worker):
    p = Producer(r)
    p.warm("user", [1, 2, 3])
    ckenv.wait_until("warmed", lambda: r.exists("user:1", "user:2", "user:3") == 3)
    assert r.hgetall("user:2") == {b"id": b"2", b"email": b"user2@example.com", b"name": b"User 2"}


def test_a_kind_no_worker_handles_is_dead_lettered_with_the_reason(r, worker):
    p = Producer(r)
    p.register(own_kind("app:nobody_handles"))
    p.enqueue("app:nobody_handles", {"x": 1})
    ckenv.wait_until("dead-lettered", lambda: len(p.dead_letters()) == 1)
    dead = p.dead_letters()[0]
    assert "app:nobody_handles" in dead.error and json.loads(dead.entry)["kind"] == "app:nobody_handles"
    print("dead letter:", dead.error)


def test_trace_context_rides_along(r):
    p = Producer(r)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    p.invalidate("user", [1], options=Options(traceparent=tp, tracestate="vendor=1"))
    e = json.loads(r.lpop(p.inbox_key))
    assert e["traceparent"] == tp and e["tracestate"] == "vendor=1" and "options" not in e
