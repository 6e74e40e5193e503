import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import ckenv  # noqa: E402


@pytest.fixture(scope="session")
def redis_server():
    s = ckenv.RedisServer()
    yield s
    s.stop()


@pytest.fixture
def r(redis_server):
    c = redis_server.client()
    c.flushall()  # our own private server
    yield c
    c.close()


@pytest.fixture(scope="session")
def pg():
    s = ckenv.PgSchema()
    conn = s.connect()
    ckenv.users_table(conn, 20000)
    conn.close()
    yield s
    s.drop()


@pytest.fixture
def config(redis_server, pg):
    return ckenv.worker_config(redis_server.url, pg.url)


@pytest.fixture
def worker(r, config):
    w = ckenv.Worker(config)
    yield w
    w.stop()


@pytest.fixture
def functions(r, config):
    """The cachekeeper_v1 library loaded, as a worker loads it on start
    (request it after worker when both are needed)."""
    ckenv.load_functions(config, r)
