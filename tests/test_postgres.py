"""Studies on PostgreSQL: the same commands as on SQLite, and four workers sharing one study.

The tests need a server: ``.ci/run`` starts one on loopback and exports
``ADAPTSEARCH_TEST_POSTGRES_URL`` (for example
``postgresql+psycopg2://postgres@127.0.0.1:55432/adaptsearch``). Without it, or when the
server does not respond, the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy
import torch
from typer.testing import CliRunner

from search.cli import app
from tests.reliability_support import start_cli, trial_census, write_quick_config

torch.set_num_threads(1)
pytestmark = pytest.mark.postgres

URL_VARIABLE = "ADAPTSEARCH_TEST_POSTGRES_URL"
WORKERS = 4
TRIALS_PER_WORKER = 5
runner = CliRunner()


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """Return the server URL from the environment, or skip when it is unset or unreachable."""
    url = os.environ.get(URL_VARIABLE)
    if not url:
        pytest.skip(f"{URL_VARIABLE} is not set; .ci/run starts a PostgreSQL server and sets it")
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as error:
        pytest.skip(f"PostgreSQL at {URL_VARIABLE} is unreachable: {str(error).splitlines()[0]}")
    finally:
        engine.dispose()
    return url


def unique_study() -> str:
    # A fresh name per test, so that reruns against the same database never resume old studies.
    return f"test-{uuid.uuid4().hex[:12]}"


def test_run_and_best_on_postgres(postgres_url, tiny_world, tmp_path):
    config = write_quick_config(tmp_path, tiny_world)
    study = unique_study()

    ran = runner.invoke(
        app,
        ["run", "--config", str(config), "--trials", "3", "--seed", "0", "--study", study,
         "--storage", postgres_url, "--studies-dir", str(tmp_path / "studies")],
    )
    best = runner.invoke(
        app, ["best", "--study", study, "--storage", postgres_url, "--export", str(tmp_path / "params.yaml")]
    )

    assert ran.exit_code == 0, ran.output
    assert best.exit_code == 0, best.output
    counts, trials = trial_census(postgres_url, study)
    # The run finished its three trials on the server, like on SQLite.
    assert counts["COMPLETE"] == 3, counts
    assert len(trials) == 3, counts
    # The export reads the study back from the server.
    assert (tmp_path / "params.yaml").is_file()
    assert f"study {study}" in best.output


def test_four_workers_on_postgres(postgres_url, tiny_world, tmp_path):
    config = write_quick_config(tmp_path, tiny_world)
    study = unique_study()
    total = WORKERS * TRIALS_PER_WORKER
    logs = [tmp_path / f"worker-{index}.log" for index in range(WORKERS)]

    # Four separate processes request the study's total, so the shared count stops them together.
    workers = [
        start_cli(
            ["run", "--config", str(config), "--trials", str(total), "--study", study, "--storage", postgres_url,
             "--studies-dir", str(tmp_path / "studies"), "--heartbeat-interval", "2"],
            cwd=tmp_path, log=log,
        )
        for log in logs
    ]
    try:
        codes = [worker.wait(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    log_text = "".join(log.read_text(errors="replace") for log in logs)
    assert codes == [0] * WORKERS, log_text
    counts, trials = trial_census(postgres_url, study)
    # Exactly the requested trials exist and finished, numbered 0..N-1 once each.
    assert counts["COMPLETE"] + counts["PRUNED"] == total, counts
    assert len(trials) == total, counts
    assert sorted(trial.number for trial in trials) == list(range(total))
    assert "Traceback" not in log_text
