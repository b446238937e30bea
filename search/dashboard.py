"""Serve optuna-dashboard on the study storage, bound to the loopback interface by default."""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

from adapters.errors import ConfigError, StudyError
from search.artifacts import artifact_dir_for, artifact_store_for
from search.storage import check_study_exists, open_storage, redact_url

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def serve_dashboard(
    storage_url: str,
    *,
    study_name: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    artifacts: str | Path | None = None,
) -> None:
    """Run optuna-dashboard on `storage_url` until interrupted (blocks).

    Parameters
    ----------
    storage_url : str
        Database URL of the studies; the database must exist.
    study_name : str or None
        A study that must exist in the storage (checked before the server starts).
    host, port
        Address to bind. The dashboard has no authentication, so a host other than a
        loopback address logs a warning.
    artifacts : path or None
        Folder of the stored adapters; None uses the storage's default folder when it exists.

    Raises
    ------
    StudyError
        If the storage or the study is missing.
    ConfigError
        If the port is out of range or already in use.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port must be an integer in [1, 65535], got {port!r}")
    if storage_url == "memory":
        raise StudyError("the dashboard needs a database storage; pass --storage sqlite:///studies/adaptsearch.db")
    storage = open_storage(storage_url, create=False, heartbeat_interval=None)
    if study_name is not None:
        check_study_exists(storage, study_name, storage_url)
    if not _is_loopback(host):
        logger.warning("optuna-dashboard has no authentication; binding to %s exposes the studies to that network", host)
    _check_port_free(host, port)

    import optuna_dashboard

    logger.info("optuna-dashboard on http://%s:%d serving %s (Ctrl-C stops it)", host, port, redact_url(storage_url))
    store = None
    folder = artifact_dir_for(storage_url, artifacts)
    if folder is not None and (artifacts is not None or folder.is_dir()):
        store = artifact_store_for(storage_url, folder, create=False)
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port") from None
