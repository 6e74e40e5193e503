"""Test services for the Python package and the FastAPI example: a private
redis-server on a unix socket, a PostgreSQL schema, the cachekeeper binary
and real worker processes. Shared by clients/python/tests and
examples/fastapi/tests (which put this directory on sys.path)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import redis

REPO = Path(__file__).resolve().parents[3]
PG_URL = os.environ.get("CACHEKEEPER_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(msg: str) -> None:
    """Fail under CI=true, skip elsewhere (as internal/testenv does)."""
    if ci():
        pytest.fail("CI=true and " + msg)
    pytest.skip(msg)


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 20.0, every: float = 0.02) -> float:
    """Poll cond until it holds; fail after timeout. Returns the seconds it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail("%s: not within %.0fs" % (what, timeout))
        time.sleep(every)
    return time.monotonic() - start


class RedisServer:
    """A private redis-server on a unix socket in a temporary directory."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not on PATH (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="ckpy")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = "unix://" + self.socket
        wait_until("redis-server answers", self._answers, 10)

    def _answers(self) -> bool:
        # The socket file exists a moment before the server accepts on it.
        if not os.path.exists(self.socket):
            return False
        c = redis.Redis(unix_socket_path=self.socket, socket_timeout=1)
        try:
            return bool(c.ping())
        except redis.exceptions.ConnectionError:
            return False
        finally:
            c.close()

    def client(self, **kw: object) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket, **kw)

    def async_client(self, **kw: object) -> "redis.asyncio.Redis":
        import redis.asyncio

        return redis.asyncio.Redis(unix_socket_path=self.socket, **kw)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class PgSchema:
    """A fresh schema in the test PostgreSQL database, dropped at the end."""

    def __init__(self) -> None:
        try:
            import psycopg2
        except ImportError:
            unavailable("psycopg2 is missing (apt-get install python3-psycopg2)")
        self.name = "ck_py_" + secrets.token_hex(5)
        try:
            self.admin = psycopg2.connect(PG_URL.split("?")[0], connect_timeout=5)
        except Exception as e:  # noqa: BLE001 - any connection failure
            unavailable("PostgreSQL at %s is unreachable: %s" % (PG_URL.split("@")[-1], e))
        self.admin.autocommit = True
        with self.admin.cursor() as c:
            c.execute("CREATE SCHEMA " + self.name)
        sep = "&" if "?" in PG_URL else "?"
        self.url = PG_URL + sep + "search_path=" + self.name

    def connect(self):  # -> psycopg2 connection with search_path set
        import psycopg2

        conn = psycopg2.connect(PG_URL.split("?")[0], options="-c search_path=" + self.name)
        conn.autocommit = True
        return conn

    def drop(self) -> None:
        with self.admin.cursor() as c:
            c.execute("DROP SCHEMA %s CASCADE" % self.name)
        self.admin.close()


_binary: Optional[str] = None


def binary() -> str:
    """The cachekeeper binary: $CACHEKEEPER_BIN (make test builds bin/cachekeeper), else built once."""
    global _binary
    if _binary:
        return _binary
    env = os.environ.get("CACHEKEEPER_BIN")
    if env:
        _binary = str((REPO / env).resolve()) if not os.path.isabs(env) else env
        return _binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.path.exists(go):
        unavailable("no cachekeeper binary: set CACHEKEEPER_BIN or install Go")
    out = os.path.join(tempfile.mkdtemp(prefix="ckbin"), "cachekeeper")
    subprocess.run([go, "build", "-o", out, "./cmd/cachekeeper"], cwd=REPO, check=True, timeout=600)
    _binary = out
    return out


def has_command(name: str) -> bool:
    """Whether this build of the binary has the command name."""
    p = subprocess.run([binary(), name, "--help"], capture_output=True, text=True, timeout=30)
    return p.returncode == 0 and "No help topic" not in p.stdout + p.stderr


def worker_config(redis_url: str, db_url: str, extra: str = "") -> str:
    """A worker configuration with the FastAPI guide's user cache."""
    return """redis: {url: "%s"}
database: {url: "%s"}
worker:
  concurrency: 4
  servers: 1
  shutdown_timeout: 3s
  metrics_addr: ""
log: {format: text, level: info}
events: {channel: "cachekeeper:events", max_keys: 100}
caches:
  user:
    key: "user:{id}"
    ttl: 1h
    by_ids: "SELECT id, email, full_name AS name FROM users WHERE id IN (?)"
    all: "SELECT id, email, full_name AS name FROM users WHERE id > ? ORDER BY id LIMIT ?"
%s""" % (redis_url, db_url, extra)


class Worker:
    """A real `cachekeeper worker` process; stop() ends it with SIGTERM."""

    def __init__(self, config: str, name: str = "worker") -> None:
        self.dir = tempfile.mkdtemp(prefix="ckw")
        self.config = os.path.join(self.dir, "cachekeeper.yaml")
        with open(self.config, "w") as f:
            f.write(config)
        self.log = os.path.join(self.dir, name + ".log")
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen([binary(), "worker", "--config", self.config], stdout=self._logf, stderr=subprocess.STDOUT)
        try:
            wait_until("worker started", lambda: "worker started" in self.logs() or self.proc.poll() is not None, 30)
        except BaseException:
            self.stop()
            raise
        if self.proc.poll() is not None:
            pytest.fail("worker exited with %s:\n%s" % (self.proc.returncode, self.logs()[-3000:]))

    def logs(self) -> str:
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Run another cachekeeper command with the worker's configuration."""
        return subprocess.run([binary(), *args, "--config", self.config], capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._logf.close()


LIBRARY = "cachekeeper_v1"


def library_loaded(r: redis.Redis) -> bool:
    return bool(r.function_list(library=LIBRARY))


def load_functions(config: str, r: redis.Redis) -> None:
    """Make sure the cachekeeper_v1 function library is loaded, as a worker
    loads it on start: already there (a worker runs), else with
    `cachekeeper functions load` when this build has it, else by starting a
    worker once. Skips when this build's worker loads no library."""
    if library_loaded(r):
        return
    if has_command("functions"):
        d = tempfile.mkdtemp(prefix="ckf")
        path = os.path.join(d, "cachekeeper.yaml")
        with open(path, "w") as f:
            f.write(config)
        p = subprocess.run([binary(), "functions", "load", "--config", path], capture_output=True, text=True, timeout=60)
        shutil.rmtree(d, ignore_errors=True)
        if p.returncode != 0:
            pytest.fail("cachekeeper functions load: %s%s" % (p.stdout, p.stderr))
    else:
        w = Worker(config, "functions-loader")
        w.stop()
    if not library_loaded(r):
        pytest.skip("this build's worker loads no %s function library: the read protocol (docs/read-protocol.md) is not in it" % LIBRARY)


def users_table(conn, n: int) -> None:
    """The guide's users table with n rows (id, email, full_name)."""
    with conn.cursor() as c:
        c.execute("CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, full_name text NOT NULL)")
        c.execute("TRUNCATE users")
        c.execute("INSERT INTO users SELECT i, 'user' || i || '@example.com', 'User ' || i FROM generate_series(1, %s) AS i", (n,))




class Proxy:
    """A TCP proxy to a unix-socket Redis that can cut every connection and
    refuse new ones for a while: a network outage of one client only."""

    def __init__(self, socket_path: str) -> None:
        import socket
        import threading

        self._target = socket_path
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(128)
        self.url = "redis://127.0.0.1:%d/0" % self._srv.getsockname()[1]
        self._mu = threading.Lock()
        self._conns: list = []
        self._down_until = 0.0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            if time.monotonic() < self._down_until:
                c.close()
                continue
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                u.connect(self._target)
            except OSError:
                c.close()
                continue
            with self._mu:
                self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        import socket

        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, seconds: float) -> None:
        """Close every connection now and refuse new ones for seconds."""
        import socket

        self._down_until = time.monotonic() + seconds
        with self._mu:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._srv.close()
        self.cut(0)


def quiet(r: redis.Redis, timeout: float = 30.0) -> None:
    """Wait until the inbox and the queues are empty and no job runs."""
    keys = ["cachekeeper:inbox", "{cachekeeper:inbox}:processing"] + ["asynq:{%s}:%s" % (q, s) for q in ("critical", "default", "low") for s in ("pending", "active")]
    wait_until("inbox and queues drained", lambda: sum(r.llen(k) for k in keys) == 0 and r.zcard("cachekeeper:warm:{user}:pending") == 0, timeout, 0.05)
