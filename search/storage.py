"""Study storage: URL checks, SQLite set up for several worker processes, heartbeats.

Supported URLs are SQLAlchemy database URLs for SQLite (``sqlite:///studies/adaptsearch.db``,
relative to the working folder), PostgreSQL (``postgresql://...``, needs psycopg2) and MySQL
(``mysql+pymysql://...``), plus ``memory`` for an in-process study that is never saved.
"""

from __future__ import annotations

import logging
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from adapters.errors import StudyError

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_URL = "sqlite:///studies/adaptsearch.db"
MEMORY_URL = "memory"

# Seconds a SQLite connection waits for another worker's write lock before failing.
SQLITE_BUSY_TIMEOUT_S = 60.0
DEFAULT_HEARTBEAT_INTERVAL_S = 10
_SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")


def check_url(url: str) -> str:
    """Return the database backend of `url` ("sqlite", "postgresql", "mysql" or "memory").

    Raises
    ------
    StudyError
        If the URL cannot be parsed or names an unsupported backend.
    """
    if url == MEMORY_URL:
        return MEMORY_URL
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StudyError(
            f"storage URL {url!r} is invalid; use e.g. sqlite:///studies/adaptsearch.db "
            "or postgresql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _SUPPORTED_BACKENDS:
        raise StudyError(
            f"storage URL {url!r} uses the unsupported scheme {backend!r}; "
            f"use one of {', '.join(_SUPPORTED_BACKENDS)} (e.g. sqlite:///studies/adaptsearch.db)"
        )
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StudyError(
            f"storage URL {url!r} names no database file; use sqlite:///PATH (e.g. "
            "sqlite:///studies/adaptsearch.db) or 'memory' for a study that is not saved"
        )
    return backend


def sqlite_path(url: str) -> Path | None:
    """Return the database file of a SQLite URL, or None for other backends."""
    if check_url(url) != "sqlite":
        return None
    return Path(make_url(url).database)


def open_storage(
    url: str,
    *,
    create: bool,
    heartbeat_interval: int | None = DEFAULT_HEARTBEAT_INTERVAL_S,
    grace_period: int | None = None,
    stale_trial_callback: Callable | None = None,
) -> optuna.storages.BaseStorage:
    """Open the storage at `url`, set up for several worker processes.

    For SQLite, the connection waits up to ``SQLITE_BUSY_TIMEOUT_S`` for locks and the
    database uses write-ahead logging, so that readers (the dashboard) and several writers
    (``--jobs``) do not fail with "database is locked". Every RDB storage records a
    heartbeat of running trials. A trial whose worker died is failed `grace_period` seconds
    (default twice `heartbeat_interval`) after its last heartbeat, and then passed to
    `stale_trial_callback`.

    Parameters
    ----------
    url : str
        Database URL or ``"memory"``.
    create : bool
        Create the SQLite file and its folder if missing. When False, a missing file raises.
    heartbeat_interval, grace_period : int or None
        Seconds; None turns the heartbeat off.
    stale_trial_callback : callable or None
        Called with (study, frozen_trial) for each stale trial.

    Raises
    ------
    StudyError
        If the URL is invalid, the SQLite file is missing (with ``create=False``), or the
        database server cannot be reached.
    """
    backend = check_url(url)
    if backend == MEMORY_URL:
        return optuna.storages.InMemoryStorage()

    engine_kwargs: dict = {}
    if backend == "sqlite":
        path = sqlite_path(url)
        if not path.exists():
            if not create:
                raise StudyError(f"study database {path} not found; run 'adaptsearch run' first or pass --storage URL")
            path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        _enable_sqlite_wal()
    else:
        engine_kwargs["pool_pre_ping"] = True

    try:
        with warnings.catch_warnings():
            # Optuna 5.1 flags the heartbeat arguments as experimental on every call.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_trial_callback,
            )
    except ImportError as error:
        cause = error.__cause__ or error
        raise StudyError(
            f"cannot open storage {redact_url(url)}: the database driver is missing ({cause}); "
            "install it (e.g. pip install psycopg2-binary, URL postgresql+psycopg2://...)"
        ) from None
    except OperationalError as error:
        raise StudyError(
            f"cannot open storage {redact_url(url)}: {_first_line(error)}; "
            "check the URL and that the database server is running"
        ) from None
    except SQLAlchemyError as error:
        raise StudyError(f"cannot open storage {redact_url(url)}: {_first_line(error)}") from None


def check_study_exists(storage: optuna.storages.BaseStorage, study_name: str, url: str) -> None:
    """Raise `StudyError` naming the stored studies if `study_name` is not among them."""
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if study_name not in names:
        stored = ", ".join(sorted(names)) if names else "none"
        raise StudyError(
            f"study {study_name!r} not found in {redact_url(url)} (stored studies: {stored}); pass --study NAME"
        )


_wal_listener_installed = False


def _enable_sqlite_wal() -> None:
    """Switch every new SQLite connection of this process to write-ahead logging.

    WAL lets readers run beside one writer; the busy timeout above makes writers queue.
    The listener is attached to the `Engine` class because Optuna creates its engine
    inside `RDBStorage`, and it only acts on `sqlite3` connections.
    """
    global _wal_listener_installed
    if _wal_listener_installed:
        return

    @event.listens_for(sqlalchemy.engine.Engine, "connect")
    def _set_wal(dbapi_connection, connection_record) -> None:  # noqa: ARG001
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    _wal_listener_installed = True


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by ***."""
    if url == MEMORY_URL:
        return url
    return make_url(url).render_as_string(hide_password=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
