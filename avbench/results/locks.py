"""One creator of a database's tables at a time, across processes.

The results store, MLflow and Optuna each create (or migrate) their tables when a
process first opens them; several processes opening a new database at once (a
suite's sweeps, a cluster's drivers) must not race. SQLite answers "database is
locked" at once, without waiting out its busy timeout, when a new file is switched
to WAL mode or a read is upgraded to a write by two processes together.
"""

from __future__ import annotations

from pathlib import Path

from avbench.errors import ConfigError

TIMEOUT_S = 120


class schema_lock:
    """A file lock beside a SQLite file (``filelock``), a session advisory lock (``key``) on PostgreSQL;
    nothing for other URLs. Raises a one-line ConfigError naming the lock when it cannot be had."""

    def __init__(self, uri: str, key: int = 0):
        self.uri, self.key, self.file, self.conn = uri, key, None, None

    def __enter__(self):
        if self.uri.startswith("sqlite:///") and self.uri[len("sqlite:///"):] not in ("", ":memory:"):
            from filelock import FileLock, Timeout

            path = Path(self.uri[len("sqlite:///"):]).expanduser()
            lock = f"{path}.lock"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.file = FileLock(lock, timeout=TIMEOUT_S)
                self.file.acquire()
            except Timeout:
                raise ConfigError(f"{lock}: another process held this lock for {TIMEOUT_S} s") from None
            except OSError as e:
                raise ConfigError(f"{lock}: cannot create the lock beside {path} ({e.strerror or e})") from None
        elif self.uri.startswith(("postgresql", "postgres")):
            from sqlalchemy import create_engine, text

            url = self.uri if "+" in self.uri.split("://")[0] else "postgresql+psycopg://" + self.uri.split("://", 1)[1]
            self.engine = create_engine(url)
            self.conn = self.engine.connect()
            self.conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self.key})
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.release()
        if self.conn is not None:
            from sqlalchemy import text

            self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self.conn.close()
            self.engine.dispose()
