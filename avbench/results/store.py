"""The results store: one row per final result, SQLite by default, any SQLAlchemy URL.

URL: ``--db`` or ``$AVBENCH_DB``; default ``sqlite:///$AVBENCH_HOME/results.db``.
PostgreSQL (``postgresql://user@host/db``) is the multi-machine backend.

Every result belongs to an *entry*: the finals of one sweep (``entry_kind="sweep"``,
named after the sweep) or a group of ``avbench run`` results (``entry_kind="run"``;
``--entry NAME``, by default one entry per configuration, budget, protocol options and
data, see ``results.rows.default_entry``). A leaderboard cell shows one entry's results
of one configuration and data version under one set of protocol options, never a mixture.

Writes are idempotent on (entry, method, dataset, features, protocol, protocol mode,
text order, config hash, seed, data fingerprint): the first result for a key is
kept, rerunning never adds a row (an INSERT ... ON CONFLICT DO NOTHING, so
concurrent writers cannot race). Schema creation is serialised (a PostgreSQL advisory
lock; SQLite's write lock), so several processes may start at once.
Stores written by earlier versions are migrated under the same lock: see ``results.migrate``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from avbench.errors import ConfigError, StoreError
from avbench.results.locks import schema_lock
from avbench.results.migrate import migrate
from avbench.results.rows import ENTRY_IDENTITY, KEY_FIELDS, _same, default_entry, row_from_result

SCHEMA_LOCK_KEY = 0x61766265  # PostgreSQL advisory lock serialising schema creation


class Base(DeclarativeBase):
    pass


class Result(Base):
    __tablename__ = "avbench_results"
    __table_args__ = (UniqueConstraint(*KEY_FIELDS, name="uq_avbench_result_entry_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry: Mapped[str] = mapped_column(String(200), index=True)
    entry_kind: Mapped[str] = mapped_column(String(16))  # sweep | run
    method: Mapped[str] = mapped_column(String(64), index=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    features: Mapped[str] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(32))
    protocol_mode: Mapped[str] = mapped_column(String(16))  # platform | reference
    protocol_options: Mapped[dict] = mapped_column(JSON)
    text_order: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    search_seeds: Mapped[list | None] = mapped_column(JSON, nullable=True)  # seeds the sweep's trials used
    reduced_budget: Mapped[bool] = mapped_column(Boolean)  # fewer epochs/batches than the protocol's default
    threads: Mapped[int | None] = mapped_column(Integer, nullable=True)  # torch CPU threads (None: unknown)
    S: Mapped[float] = mapped_column(Float)  # ×100, as reported
    U: Mapped[float] = mapped_column(Float)
    HM: Mapped[float] = mapped_column(Float)
    ZSL: Mapped[float] = mapped_column(Float)
    beta: Mapped[float] = mapped_column(Float)
    best_epoch: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(16))
    data_fingerprint: Mapped[str] = mapped_column(String(32))
    avbench_version: Mapped[str] = mapped_column(String(32))
    git_revision: Mapped[str | None] = mapped_column(String(64), nullable=True)
    torch_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ray_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    optuna_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    mlflow_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    device: Mapped[str] = mapped_column(String(32))
    # the CPU or GPU model (protocol.machine.hardware); None: not recorded (stores before it)
    hardware: Mapped[str | None] = mapped_column(String(200), nullable=True)
    seconds: Mapped[float] = mapped_column(Float)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict] = mapped_column(JSON)  # stage-1 history, val metrics, β curve (for plots)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def default_url(home: str | os.PathLike | None = None) -> str:
    from avbench.data.registry import avbench_home

    env = os.environ.get("AVBENCH_DB")
    if env:
        return env
    path = avbench_home(home) / "results.db"
    return f"sqlite:///{path}"


def _normalise_url(url: str) -> str:
    # psycopg 3 is the driver avbench installs; plain postgresql:// would ask for psycopg2
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Store:
    """Open (and if needed create) the results store at ``url``."""

    def __init__(self, url: str | None = None, home: str | os.PathLike | None = None):
        self.url = _normalise_url(url or default_url(home))
        try:
            u = make_url(self.url)
        except ArgumentError:
            raise StoreError(f"--db {url!r}: not a SQLAlchemy database URL (e.g. sqlite:///results.db)") from None
        self.backend = u.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.backend == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60}
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (NoSuchModuleError, ImportError) as e:
            raise StoreError(f"--db {self.url}: no driver for this database ({e})") from None
        if self.backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._create_schema()

    def _create_schema(self) -> None:
        for attempt in range(5):
            try:
                with schema_lock(self.url, SCHEMA_LOCK_KEY), self.engine.begin() as conn:  # one creator at a time
                    Base.metadata.create_all(conn, checkfirst=True)
                    migrate(conn, Result.__table__)
                return
            except DBAPIError as e:
                # another process created the table (or migrated it) between our check and ours: check again
                if ("already exists" in str(e) or "duplicate column" in str(e)) and attempt < 4:
                    continue
                if "must be owner" in str(e):
                    raise StoreError(
                        f"results store {self._safe_url()}: written by an earlier avbench, it needs new columns, "
                        f"which only the owner of table {Result.__tablename__} may add: open it once as that user"
                    ) from None
                raise StoreError(
                    f"results store {self._safe_url()}: cannot connect or create tables ({_first_line(e)})"
                ) from None
            except ConfigError as e:  # the schema lock
                raise StoreError(f"results store {self._safe_url()}: {e}") from None

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # -- writing ------------------------------------------------------------
    def add_rows(self, rows: Iterable[dict]) -> list[tuple[int, bool]]:
        """Insert rows idempotently; return (id, inserted) for each."""
        rows = list(rows)
        if not rows:
            return []
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.backend == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - other backends: plain insert guarded by the unique key
            insert = None
        for row in rows:
            row.setdefault("entry_kind", "run")
            row.setdefault("protocol_mode", "platform")
            row.setdefault("protocol_options", {})
            row.setdefault("reduced_budget", False)
            row.setdefault("entry", default_entry(row))
        for row in {r["entry"]: r for r in rows}.values():
            self.check_entry(row)
        out = []
        try:
            with Session(self.engine) as session, session.begin():
                for row in rows:
                    inserted = True
                    if insert is not None:
                        stmt = insert(Result).values(**row).on_conflict_do_nothing(
                            index_elements=list(KEY_FIELDS)
                        ).returning(Result.id)
                        rid = session.execute(stmt).scalar()
                    else:
                        rid = None
                    if rid is None:
                        inserted = False
                        rid = session.execute(
                            select(Result.id).filter_by(**{k: row[k] for k in KEY_FIELDS})
                        ).scalar_one()
                    out.append((int(rid), inserted))
        except DBAPIError as e:  # unreachable, locked, or no right to write (e.g. a PostgreSQL role without INSERT)
            raise StoreError(f"results store {self._safe_url()}: {_first_line(e)}") from None
        return out

    def add(
        self,
        result,
        mlflow_run_id: str | None = None,
        *,
        entry: str | None = None,
        entry_kind: str = "run",
        search_seeds: list[int] | None = None,
    ) -> tuple[int, bool]:
        row = row_from_result(result, mlflow_run_id, entry=entry, entry_kind=entry_kind, search_seeds=search_seeds)
        return self.add_rows([row])[0]

    def check_entry_compatible(self, entry: str, **identity) -> None:
        """Before a run: would a result with this identity fit the named entry? (See :meth:`check_entry`.)"""
        existing = self.rows(columns=list(ENTRY_IDENTITY), entry=entry)
        if not existing:
            return
        first = existing[0]
        if first["entry_kind"] != "run":
            raise StoreError(f"entry {entry!r} holds the finals of a sweep; `avbench run` results need another --entry")
        for k, v in identity.items():
            if not _same(k, first[k], v):
                raise StoreError(
                    f"entry {entry!r} holds {k}={first[k]!r}; this run has {k}={v!r}: one entry is one configuration "
                    f"on one data version (choose another --entry)"
                )

    def check_entry(self, row: dict) -> None:
        """A named ``run`` entry holds one configuration of one method on one data version:
        refuse a result that differs (one line naming the entry and what differs)."""
        existing = self.rows(columns=list(ENTRY_IDENTITY), entry=row["entry"])
        if not existing:
            return
        first = existing[0]
        if first["entry_kind"] != row["entry_kind"]:
            raise StoreError(
                f"entry {row['entry']!r} holds {first['entry_kind']} results; this is a {row['entry_kind']} result "
                f"(choose another --entry)"
            )
        if row["entry_kind"] == "sweep":
            return  # a resumed sweep may move its entry to a new best configuration (a new cell)
        for k in ENTRY_IDENTITY:
            if not _same(k, first[k], row[k]):
                raise StoreError(
                    f"entry {row['entry']!r} holds {k}={first[k]!r}; this result has {k}={row[k]!r}: one entry is "
                    f"one configuration on one data version (choose another --entry)"
                )

    # -- reading ------------------------------------------------------------
    def rows(self, columns: Iterable[str] | None = None, **filters) -> list[dict]:
        """Rows as dicts (SQLAlchemy Core, no ORM objects: fast for large stores)."""
        cols = [getattr(Result, c) for c in (columns or [c.name for c in Result.__table__.columns])]
        stmt = select(*cols)
        for key, value in filters.items():
            if value is None:
                continue
            col = getattr(Result, key)
            stmt = stmt.where(col.in_(value) if isinstance(value, (list, tuple, set)) else col == value)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.order_by(Result.id))]

    def configs(self) -> dict[str, dict]:
        """Each distinct configuration in the store, by its hash (one row read per hash)."""
        first = select(func.min(Result.id)).group_by(Result.config_hash)
        with self.engine.connect() as conn:
            query = select(Result.config_hash, Result.config).where(Result.id.in_(first))
            return {h: c for h, c in conn.execute(query)}

    def get(self, result_id: int) -> dict:
        rows = self.rows(id=int(result_id))
        if not rows:
            raise StoreError(f"result {result_id}: no such result in {self._safe_url()} (see `avbench results`)")
        return rows[0]

    def delete_entry(self, entry: str) -> int:
        """Remove every result of ``entry``; the number removed (0: no such entry)."""
        with Session(self.engine) as session, session.begin():
            n = session.execute(delete(Result).where(Result.entry == entry)).rowcount
        return int(n or 0)

    def entries(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(Result.entry).distinct().order_by(Result.entry))]

    def count(self) -> int:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(Result)).scalar_one())


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _first_line(e: Exception) -> str:
    msg = str(getattr(e, "orig", e) or e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
