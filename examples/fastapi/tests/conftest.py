import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(REPO, "clients", "python", "src"), os.path.join(REPO, "clients", "python", "tests")]

import ckenv  # noqa: E402
from db import Database  # noqa: E402


@pytest.fixture(scope="session")
def redis_server():
    s = ckenv.RedisServer()
    yield s
    s.stop()


@pytest.fixture
def r(redis_server):
    c = redis_server.client(decode_responses=True)
    c.flushall()  # our own private server
    yield c
    c.close()


@pytest.fixture(scope="session")
def pg():
    s = ckenv.PgSchema()
    conn = s.connect()
    ckenv.users_table(conn, 1000)
    conn.close()
    yield s
    s.drop()


@pytest.fixture
def users(pg):
    """Every row back to its original name."""
    conn = pg.connect()
    with conn.cursor() as c:
        c.execute("UPDATE users SET full_name = 'User ' || id, email = 'user' || id || '@example.com'")
    yield conn
    conn.close()


@pytest.fixture
def db(pg):
    d = Database(ckenv.PG_URL.split("?")[0], options="-c search_path=" + pg.name, max_conns=40)
    yield d
    d.close()


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
    ckenv.load_functions(config, r)
