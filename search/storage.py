"""Study storage: URL checks, SQLite set up for several worker processes, heartbeats.

Supported URLs are SQLAlchemy database URLs for SQLite (``sqlite:///studies/adaptsearch.db``,
relative to the working folder), PostgreSQL (``postgresql://...``, needs psycopg2) and MySQL
(``mysql+pymysql://...``), plus ``memory`` for an in-process study that is never saved.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import logging
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool

from adapters.errors import StudyError
from adapters.io import os_error_reason

logger = logging.getLogger(__name__)

DEFAULT_STORAGE_URL = "sqlite:///studies/adaptsearch.db"
MEMORY_URL = "memory"

# Seconds a SQLite connection waits for another worker's write lock before failing.
SQLITE_BUSY_TIMEOUT_S = 60.0
DEFAULT_HEARTBEAT_INTERVAL_S = 10
_SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
# The pip package of each SQLAlchemy driver name, for the message when the driver is missing.
_DRIVER_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "psycopg[binary]",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "pymysql": "PyMySQL",
    "mysqldb": "mysqlclient",
    "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb",
}


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
            "or postgresql+psycopg2://user@host/db"
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
        sqlite_database(url, create=create)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        _enable_sqlite_wal()
    else:
        engine_kwargs["pool_pre_ping"] = True

    with _storage_errors(url):
        attempt = 1
        while True:
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
            except (IntegrityError, OperationalError) as error:
                if attempt == _SETUP_ATTEMPTS or not _lost_setup_race(error):
                    raise
                logger.debug("storage set-up raced another process (%s); retrying", _first_line(error))
                time.sleep(0.1 * attempt)
                attempt += 1


# Attempts at opening a storage whose tables another process is creating at the same moment.
_SETUP_ATTEMPTS = 5


def _lost_setup_race(error: SQLAlchemyError) -> bool:
    """True for the errors of two processes creating Optuna's tables in one new database at once.

    Opening an RDB storage creates the tables that are missing and inserts Optuna's schema
    version rows. Two processes that both find them missing (workers started together on a new
    SQLite file, or a worker and a reader) both try. The slower one fails on a table that now
    exists, on a duplicate version row or on SQLite's lock, and opening again then finds
    everything in place.
    """
    if isinstance(error, IntegrityError):
        return True
    # SQLite raises "database is locked" without waiting when a reader's transaction must
    # become a writer after another connection wrote (here, the other process's tables).
    return "already exists" in str(error) or "database is locked" in str(error)


def sqlite_database(url: str, *, create: bool) -> Path:
    """Return the database file of the SQLite `url`, creating its folder when `create` is set.

    Raises
    ------
    StudyError
        If the path is a folder, the file is missing and `create` is False, or the folder
        cannot be created.
    """
    path = sqlite_path(url)
    if path.is_dir():
        raise StudyError(
            f"storage {redact_url(url)} names the folder {path}, not a database file; "
            f"name a file in it, e.g. sqlite:///{path / 'adaptsearch.db'}"
        )
    if path.exists():
        return path
    if not create:
        raise StudyError(f"study database {path} not found; run 'adaptsearch run' first or pass --storage URL")
    if not path.parent.is_dir():
        # Logged because a mistyped --storage path would otherwise start a new study silently.
        logger.info("creating the folder %s for the new study database %s", path.parent, path.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StudyError(
            f"cannot create the folder {path.parent} of study database {path}: {os_error_reason(path.parent, error)}; "
            "pass --storage with a path in a writable folder"
        ) from None
    return path


@contextlib.contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """Turn a missing driver and database errors raised inside the block into `StudyError`."""
    try:
        yield
    except ImportError as error:
        cause = error.__cause__ or error
        driver = make_url(url).get_driver_name()
        package = _DRIVER_PACKAGES.get(driver, driver)
        raise StudyError(
            f"cannot open storage {redact_url(url)}: the database driver {driver} is missing ({cause}); "
            f"install it with pip install {package}"
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


class StartLock:
    """A lock that the adaptsearch processes of one study hold while they count trials and start one.

    Optuna numbers trials safely, but a worker's check "fewer than N trials are finished or
    running" and its creation of the next trial are two steps. Two workers could both pass the
    check for the last slot and run N + 1 trials. Holding this lock across both steps makes the
    pair atomic among adaptsearch processes. The lock is held only between the check and the
    moment the new trial is RUNNING, never during training, and the operating system or the
    database server releases it when its process dies.

    This base class is the lock of the in-memory storage. It does nothing, because only one
    process can open such a study. `release` may be called when the lock is not held.
    """

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def __enter__(self) -> StartLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class _FileStartLock(StartLock):
    """An exclusive `flock` on a file beside the SQLite database (processes of one machine)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def acquire(self) -> None:
        import fcntl

        handle = open(self.path, "ab")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            # Closing the file releases the flock.
            handle.close()


class _ServerStartLock(StartLock):
    """A PostgreSQL advisory lock or a MySQL named lock, held on a connection of its own."""

    def __init__(self, url: str, backend: str, study_name: str) -> None:
        self.url = url
        self.backend = backend
        digest = hashlib.blake2b(f"adaptsearch start lock {study_name}".encode(), digest_size=8)
        # PostgreSQL advisory locks take a signed 64-bit key, MySQL named locks up to 64 characters.
        self._key = int.from_bytes(digest.digest(), "big", signed=True)
        self._name = f"adaptsearch-{digest.hexdigest()}"
        with _storage_errors(url):
            # No pool: each lock gets a fresh session, and closing it ends the session.
            self._engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        self._connection = None

    def acquire(self) -> None:
        with _storage_errors(self.url):
            connection = self._engine.connect()
            try:
                if self.backend == "postgresql":
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
                else:
                    # NOTE: the MySQL branch has not been run against a server; only PostgreSQL is tested.
                    # A negative timeout waits without limit (MySQL 5.7 and later).
                    connection.execute(sqlalchemy.text("SELECT GET_LOCK(:name, -1)"), {"name": self._name})
            except BaseException:
                connection.close()
                raise
        self._connection = connection

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self.backend == "postgresql":
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            else:
                connection.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:name)"), {"name": self._name})
        except SQLAlchemyError as error:
            # The server releases session locks when the connection closes below anyway.
            logger.debug("releasing the start lock failed: %s", _first_line(error))
        finally:
            connection.close()


def record_first_heartbeat(study: optuna.Study, trial_id: int) -> None:
    """Record the heartbeat of a trial this process has just started, before it releases its start lock.

    Optuna records a trial's first heartbeat from a thread that starts after the trial is
    RUNNING. Recording one here, while the start lock is held, means that a RUNNING trial
    without a heartbeat seen under the lock belongs to a process that died in between (see
    `fail_trials_without_heartbeat`).
    """
    storage = study._storage
    if is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial_id)


def fail_trials_without_heartbeat(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials that never recorded a heartbeat and started over a grace period ago.

    Optuna's stale-trial rule looks only at trials that have a heartbeat. A worker killed
    after creating its trial and before the first heartbeat would leave the trial RUNNING
    for ever, and the other workers would wait for it to end. Call this while holding the
    study's `StartLock`. The failed trials go to the storage's stale-trial callback like
    Optuna's own stale trials (which queues them again). Returns the failed trial numbers.
    """
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return []
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return []
    grace = backend.grace_period if backend.grace_period is not None else 2 * backend.heartbeat_interval
    # Optuna stamps datetime_start with the clock of the process that started the trial.
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)
    running = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trial.datetime_start is not None and trial.datetime_start < cutoff
    ]
    if not running:
        return []
    query = sqlalchemy.text("SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids").bindparams(
        sqlalchemy.bindparam("ids", expanding=True)
    )
    with backend.engine.connect() as connection:
        beating = {row[0] for row in connection.execute(query, {"ids": [trial._trial_id for trial in running]})}
    failed = []
    for trial in running:
        if trial._trial_id in beating:
            continue
        try:
            changed = storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            changed = False
        if changed:
            failed.append(trial)
            logger.warning(
                "trial %d has been RUNNING for over %d s without a heartbeat (its worker died as it started); marked FAIL",
                trial.number, grace,
            )
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is not None:
        for trial in failed:
            callback(study, copy.deepcopy(storage.get_trial(trial._trial_id)))
    return [trial.number for trial in failed]


def open_start_lock(url: str, study_name: str) -> StartLock:
    """Return the `StartLock` of `study_name` in the storage at `url`.

    For SQLite it is a file ``<database>.lock`` beside the database, whose folder is created
    here, so that an unusable path fails before any data is prepared.

    Raises
    ------
    StudyError
        If the URL is invalid, the database folder or lock file cannot be created, or the
        database driver is missing.
    """
    backend = check_url(url)
    if backend == MEMORY_URL:
        return StartLock()
    if backend == "sqlite":
        database = sqlite_database(url, create=True)
        path = database.with_name(database.name + ".lock")
        try:
            path.touch(exist_ok=True)
        except OSError as error:
            raise StudyError(
                f"cannot create the lock file {path} beside study database {database}: "
                f"{error.strerror or error}; pass --storage with a path in a writable folder"
            ) from None
        return _FileStartLock(path)
    return _ServerStartLock(url, backend, study_name)


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
