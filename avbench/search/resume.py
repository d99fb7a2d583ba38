"""What a sweep was started with, and the Optuna study it continues.

A sweep records its settings in ``<home>/sweeps/<name>/avbench_sweep.json`` when it
starts (:func:`check_settings`); a resumed sweep must have the same ones, as Ray Tune
restores an experiment as it was started. Its Optuna study (:func:`optuna_storage`)
lives beside that folder or in ``--storage``, and is used only by a sweep whose folder
records the settings it was made under (:func:`check_study`): its trials count toward
the sweep and steer its search, so trials scored on other search seeds, another budget
or other data must not.
"""

from __future__ import annotations

import json
from pathlib import Path

from avbench.errors import ConfigError

SETTINGS_FILE = "avbench_sweep.json"  # what the experiment was started with (checked on resume)


def optuna_storage(url: str | None, default_path: Path):
    """The Optuna storage of a sweep's study: a PostgreSQL (or other SQLAlchemy) URL, or a journal file."""
    import optuna

    from avbench.results.locks import schema_lock
    from avbench.search.tracking import OPTUNA_LOCK_KEY

    if url:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        try:
            with schema_lock(url, OPTUNA_LOCK_KEY):  # two sweeps may create the study tables at once
                return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except Exception as e:
            raise ConfigError(f"--storage {url}: cannot open the Optuna storage ({str(e).splitlines()[0]})") from None
    from optuna.storages.journal import JournalFileBackend

    default_path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(default_path)))


def _normalised(settings: dict) -> dict:
    """The settings as the file holds them (JSON types, sorted keys)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def check_settings(exp_path: Path, name: str, settings: dict, restoring: bool, storage_url: str | None = None,
                   journal: Path | None = None, recorded_since: dict | None = None) -> None:
    """Record what a new experiment starts with; on resume, refuse other settings (Ray Tune would ignore them).

    With ``journal`` (the default study file; ``storage_url`` where the study is in a
    database), a new experiment first checks its Optuna study (:func:`check_study`).
    ``recorded_since`` maps settings that experiments started by earlier versions did not
    record to the value they had then (e.g. ``protocol_options``: ``{}``, which was right
    for the platform mode); any other unrecorded setting is taken as unchanged."""
    path = exp_path / SETTINGS_FILE
    settings = _normalised(settings)
    if restoring and path.is_file():
        started = json.loads(path.read_text())
        for key, value in settings.items():
            was = started.get(key, (recorded_since or {}).get(key, value))
            if was == value:
                continue
            if key not in started:
                raise ConfigError(
                    f"sweep {name}: was started by an earlier avbench that did not record {key} (then always "
                    f"{was!r}); this version has {key}={value!r}, and Ray Tune resumes an experiment as it was "
                    "started; use another --name"
                )
            if isinstance(value, dict) and isinstance(was, dict):  # name the setting that differs
                sub = next(k for k in sorted({*value, *was}) if value.get(k) != was.get(k))
                key, value, was = f"{key}.{sub}", value.get(sub), was.get(sub)
            raise ConfigError(
                f"sweep {name}: {key}={value!r}, but the sweep was started with {key}={was!r} and Ray Tune resumes "
                "an experiment as it was started; rerun with the same settings or use another --name"
            )
        return
    if journal is not None:
        check_study(storage_url, journal, name, exp_path, settings)
    exp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True))


def check_study(storage_url: str | None, journal: Path, name: str, exp_path: Path, settings: dict) -> None:
    """Refuse an Optuna study of this name whose trials were made under settings not on record here.

    The study lives beside the sweep's folder (``<name>.optuna.journal``) or in ``--storage``,
    so it outlives a deleted folder, and two homes sharing one storage share it. Its trials
    would still count and steer the search (TPE; a suite also takes its best trial as the
    sweep's), though they may have been scored on other search seeds (whose finals the
    leaderboard would then show), another budget or other data. A study is used only when
    this folder records the same settings as now.
    """
    path = exp_path / SETTINGS_FILE
    if path.is_file() and json.loads(path.read_text()) == _normalised(settings):
        return
    if not storage_url and not journal.is_file():  # no storage yet: no study
        return
    import optuna

    try:
        trials = len(optuna.load_study(study_name=name, storage=optuna_storage(storage_url, journal)).trials)
    except KeyError:  # no study of this name
        return
    if trials:
        fix = (f"delete {journal}" if not storage_url
               else f"delete the study (optuna.delete_study(study_name={name!r}, storage=...))")
        why = "its folder records other settings" if path.is_file() else f"{exp_path} is gone"
        raise ConfigError(
            f"sweep {name}: the Optuna storage {storage_url or journal} holds {trials} trials of a study {name!r} "
            f"made under settings not on record ({why}): they may be scored on other search seeds, budget or data; "
            f"{fix}, or use another --name"
        )
