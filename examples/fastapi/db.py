"""The database both versions of the app use: the guide's users table
(id, email, full_name) in PostgreSQL, through psycopg2.

It counts the queries it sends (the measurements compare them) and can
pause after a read, before it returns the row, to widen the window in which
a concurrent write races with a cache fill, as a slow request does."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Dict, Optional

import psycopg2.pool


class Database:
    def __init__(self, dsn: str, *, options: str = "", read_delay: float = 0.0, max_conns: int = 20) -> None:
        self.pool = psycopg2.pool.ThreadedConnectionPool(1, max_conns, dsn, options=options)
        self.read_delay = read_delay
        self.queries = 0
        self._mu = threading.Lock()

    def _get(self, user_id: int) -> Optional[Dict[str, Any]]:
        conn = self.pool.getconn()
        try:
            with conn, conn.cursor() as c:
                c.execute("SELECT id, email, full_name FROM users WHERE id = %s", (user_id,))
                row = c.fetchone()
        finally:
            self.pool.putconn(conn)
        with self._mu:
            self.queries += 1
        return None if row is None else {"id": row[0], "email": row[1], "full_name": row[2]}

    async def get_user(self, user_id: int) -> Optional[Dict[str, Any]]:
        row = await asyncio.to_thread(self._get, user_id)
        if self.read_delay:
            await asyncio.sleep(self.read_delay)
        return row

    def _update(self, user_id: int, updates: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        cols = [k for k in updates if k in ("email", "full_name")]
        if not cols:
            raise ValueError("nothing to update: give email or full_name")
        conn = self.pool.getconn()
        try:
            with conn, conn.cursor() as c:
                c.execute(
                    "UPDATE users SET " + ", ".join("%s = %%s" % k for k in cols) + " WHERE id = %s RETURNING id, email, full_name",
                    [updates[k] for k in cols] + [user_id],
                )
                row = c.fetchone()
        finally:
            self.pool.putconn(conn)
        return None if row is None else {"id": row[0], "email": row[1], "full_name": row[2]}

    async def update_user(self, user_id: int, updates: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        return await asyncio.to_thread(self._update, user_id, updates)

    def close(self) -> None:
        self.pool.closeall()
