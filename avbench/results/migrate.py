"""Migrations of results stores written by earlier avbench versions, run each time a store is opened.

A store written before entries existed gets the entry columns, and its rows become
entries (:func:`_migrate_entries`); one written before a column added since (such as
the machine) gets that column, nullable and left empty (unknown) on the old rows. Both
are idempotent Alembic operations (batch mode on SQLite). ``Store._create_schema`` runs
them in the transaction that creates the tables, under the schema lock (a PostgreSQL
advisory lock; SQLite's write lock), so several processes may open an old store at once.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Integer, String, Table, inspect, select

from avbench.errors import StoreError
from avbench.results.rows import KEY_FIELDS, default_entry

LEGACY_KEY_FIELDS = ("method", "dataset", "features", "protocol", "text_order", "config_hash", "seed", "data_fingerprint")


def migrate(conn, table: Table) -> None:
    """Bring a store written by an earlier avbench to the current schema (idempotent):
    :func:`_migrate_entries`, then every nullable column added since, left empty
    (unknown) on the old rows."""
    _migrate_entries(conn, table)
    have = {c["name"] for c in inspect(conn).get_columns(table.name)}
    missing = [c for c in table.columns if c.name not in have]
    if not missing:
        return
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    op = Operations(MigrationContext.configure(conn))
    for c in missing:
        if not c.nullable:
            raise StoreError(f"results store: column {c.name} has no migration for the rows already stored")
        op.add_column(table.name, Column(c.name, c.type, nullable=True))


def _migrate_entries(conn, table: Table) -> None:
    """Bring a store written before entries existed to the schema of entries (idempotent).

    Old rows become entries: sweep finals (they carry an MLflow run id) of kind ``sweep``
    named ``migrated-sweep/<method>/<dataset>-<features>/<protocol>/<config>``, others the
    default run entry; their budget is unknown, so they count as full-budget. Old sweeps
    chose their configuration on seed 0 and reran it as a final: their search seeds are
    recorded as ``[0]``, so the leaderboard leaves that final out.
    """
    cols = {c["name"] for c in inspect(conn).get_columns(table.name)}
    if "entry" in cols:
        return
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    op = Operations(MigrationContext.configure(conn))
    new_cols = [
        Column("entry", String(200), nullable=True),
        Column("entry_kind", String(16), nullable=True),
        Column("protocol_mode", String(16), nullable=True),
        Column("protocol_options", JSON, nullable=True),
        Column("search_seeds", JSON, nullable=True),
        Column("reduced_budget", Boolean, nullable=True),
        Column("threads", Integer, nullable=True),
    ]
    with op.batch_alter_table(table.name) as batch:
        for c in new_cols:
            batch.add_column(c)
    rows = conn.execute(select(table.c.id, *[table.c[k] for k in LEGACY_KEY_FIELDS], table.c.mlflow_run_id)).all()
    for r in rows:
        m = dict(r._mapping)
        m["protocol_mode"] = "platform"
        if m["mlflow_run_id"]:
            kind = "sweep"
            entry = (f"migrated-sweep/{m['method']}/{m['dataset']}-{m['features']}/{m['protocol']}/"
                     f"{m['config_hash'][:8]}")
        else:
            kind, entry = "run", default_entry(m)
        conn.execute(
            table.update().where(table.c.id == m["id"]).values(
                entry=entry, entry_kind=kind, protocol_mode="platform", protocol_options={}, reduced_budget=False,
                # sweeps before entries trained every trial on seed 0 and ran finals from seed 0
                search_seeds=[0] if kind == "sweep" else None,
            )
        )
    with op.batch_alter_table(table.name) as batch:
        batch.drop_constraint("uq_avbench_result_key", type_="unique")
        for name in ("entry", "entry_kind", "protocol_mode", "protocol_options", "reduced_budget"):
            batch.alter_column(name, nullable=False)
        batch.create_unique_constraint("uq_avbench_result_entry_key", list(KEY_FIELDS))
        batch.create_index("ix_avbench_results_entry", ["entry"])

