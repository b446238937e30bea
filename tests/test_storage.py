"""Storage URLs and the SQLite set-up for several workers."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sqlite3
import threading

import optuna
import pytest

from adapters.errors import StudyError
from search.storage import (
    check_study_exists,
    check_url,
    open_start_lock,
    open_storage,
    redact_url,
    sqlite_database,
    sqlite_path,
)


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("sqlite:///studies/adaptsearch.db", "sqlite"),
        ("sqlite:////abs/path.db", "sqlite"),
        ("postgresql://user@localhost/db", "postgresql"),
        ("postgresql+psycopg2://user@localhost/db", "postgresql"),
        ("mysql+pymysql://user@localhost/db", "mysql"),
        ("memory", "memory"),
    ],
)
def test_supported_urls(url, backend):
    # Each supported URL maps to its backend name.
    assert check_url(url) == backend


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("ftp://host/x", "unsupported scheme 'ftp'"),
        ("redis://localhost", "unsupported scheme 'redis'"),
        ("studies/adaptsearch.db", "invalid"),
        ("sqlite://", "names no database file"),
        ("sqlite:///:memory:", "names no database file"),
    ],
)
def test_rejected_urls(url, pattern):
    # Unsupported or incomplete URLs raise StudyError with an example of a valid one.
    with pytest.raises(StudyError, match=pattern):
        check_url(url)


def test_sqlite_relative_to_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    open_storage("sqlite:///studies/adaptsearch.db", create=True)

    # A relative SQLite path is created, folder included, under the working folder.
    assert sqlite_path("sqlite:///studies/adaptsearch.db").as_posix() == "studies/adaptsearch.db"
    assert (tmp_path / "studies" / "adaptsearch.db").is_file()


def test_sqlite_uses_wal(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, create=True)
    optuna.create_study(storage=storage, study_name="s")

    # The database file is in write-ahead-log mode, so readers do not block the writer.
    with sqlite3.connect(tmp_path / "study.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_missing_sqlite_file_without_create(tmp_path):
    # Reading commands do not create a database. The error for a missing file asks the user to run the search first.
    with pytest.raises(StudyError, match="not found.*adaptsearch run"):
        open_storage(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()


def test_unreachable_server():
    # A server that refuses the connection gives a StudyError, not a SQLAlchemy traceback.
    with pytest.raises(StudyError, match="database server is running"):
        open_storage("postgresql+psycopg2://user@127.0.0.1:1/db", create=False)


def test_missing_study_lists_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url, create=True)
    optuna.create_study(storage=storage, study_name="first")

    # A missing study name raises and lists the stored ones.
    with pytest.raises(StudyError, match="'second' not found.*stored studies: first.*--study"):
        check_study_exists(storage, "second", url)


def test_heartbeat_configured(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=True, heartbeat_interval=3, grace_period=5)

    # RDB storages record heartbeats with the given interval and grace period.
    assert storage.get_heartbeat_interval() == 3
    assert storage.grace_period == 5


def test_redact_url_hides_password():
    # Passwords never reach messages or exported files.
    assert "secret" not in redact_url("postgresql://user:secret@host/db")


def _second_holder_waits(first, second) -> None:
    acquired = threading.Event()

    def take_second() -> None:
        second.acquire()
        acquired.set()
        second.release()

    first.acquire()
    thread = threading.Thread(target=take_second)
    thread.start()
    try:
        # While the first lock is held, a second holder of the same study waits.
        assert not acquired.wait(0.3)
    finally:
        first.release()
    thread.join(timeout=10)
    # Once it is released, the second holder gets the lock.
    assert acquired.is_set()


def test_start_lock_sqlite_excludes(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'a.db'}"

    first, second = open_start_lock(url, "s"), open_start_lock(url, "s")

    # The lock file is created beside the database, in the folder created for it.
    assert (tmp_path / "new" / "a.db.lock").is_file()
    _second_holder_waits(first, second)
    # Releasing a lock that is not held does nothing.
    first.release()


def test_start_lock_postgres_excludes():
    url = os.environ.get("ADAPTSEARCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("ADAPTSEARCH_TEST_POSTGRES_URL is not set; .ci/run starts a PostgreSQL server and sets it")

    _second_holder_waits(open_start_lock(url, "lock-test"), open_start_lock(url, "lock-test"))


def test_sqlite_url_naming_folder(tmp_path):
    # A folder where the database file should be is reported as such, not as a server problem.
    with pytest.raises(StudyError, match="names the folder"):
        open_storage(f"sqlite:///{tmp_path}", create=True)


def test_missing_driver_named():
    # The message names the driver of the URL and its pip package.
    with pytest.raises(StudyError, match=r"driver pymysql is missing .*pip install PyMySQL"):
        open_storage("mysql+pymysql://user@127.0.0.1:1/db", create=False)


def _open_at_barrier(url: str, barrier) -> str:
    barrier.wait()
    try:
        open_storage(url, create=True)
    except StudyError as error:
        return str(error)
    return "ok"


def test_concurrent_first_open_succeeds(tmp_path):
    # Workers started together on a new file all create Optuna's tables and version rows. The
    # ones that lose that race open the storage again instead of failing.
    context = multiprocessing.get_context("spawn")
    processes = 4
    with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        for round_number in range(4):
            url = f"sqlite:///{tmp_path / f'race-{round_number}.db'}"
            barrier = manager.Barrier(processes)
            outcomes = list(pool.map(_open_at_barrier, [url] * processes, [barrier] * processes))

            assert outcomes == ["ok"] * processes, outcomes


def test_new_database_folder_is_logged(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'new' / 'study.db'}"

    with caplog.at_level("INFO", logger="search.storage"):
        path = sqlite_database(url, create=True)
        sqlite_database(url, create=True)

    assert path.parent.is_dir()
    # Logged once: the second call finds the folder in place.
    assert [message for message in caplog.messages if "creating the folder" in message] == [
        f"creating the folder {tmp_path / 'new'} for the new study database study.db"
    ]
