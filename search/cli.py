"""The `adaptsearch` command line: a thin Typer layer over `search` and `adapters`.

Each command parses its options and calls one library function. Errors of the
`AdaptSearchError` family are caught here, once, and printed as a single red line with a
non-zero exit code; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import warnings
from typing import Annotated, Optional

import optuna
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from adapters.errors import AdaptSearchError
from search import __version__
from search.commands import FLAG

err_console = Console(stderr=True)

app = typer.Typer(
    name="adaptsearch",
    help="Search adapter hyperparameters that carry a MOSEI sentiment model over to MOSI.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"adaptsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.", metavar=FLAG)] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.", metavar=FLAG)
    ] = False,
    version: Annotated[
        Optional[bool],
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit.", metavar=FLAG
        ),
    ] = None,
) -> None:
    _state["debug"] = debug
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=True)
    handler.addFilter(_DropInterruptedTrialLogs())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[handler],
        force=True,
    )
    # Optuna logs one INFO line per trial; the progress display shows the same facts.
    logging.getLogger("optuna").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Optuna's records go through the handler above instead of Optuna's own, which lacks the filter.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    # Warnings (non-finite input counts, the original settings outside the space) go through
    # the same handler as one line each. The source line that raised them is left out.
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


class _DropInterruptedTrialLogs(logging.Filter):
    """Drop Optuna's two warnings about a trial that Ctrl-C ended.

    Optuna logs such a trial as failed, with the KeyboardInterrupt traceback, and then logs its
    value. The run reports the interruption itself; the warnings of real failures pass.
    """

    _FAILED = re.compile(r"Trial (\d+) failed ")

    def __init__(self) -> None:
        super().__init__()
        self._interrupted: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("optuna"):
            return True
        match = self._FAILED.match(record.getMessage())
        if match is None:
            return True
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self._interrupted.add(match.group(1))
            return False
        return match.group(1) not in self._interrupted


def _register_commands() -> None:
    from search.commands import data, report, study, train

    app.add_typer(data.app, name="data")
    study.register(app)
    train.register(app)
    report.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Run the command line and turn `AdaptSearchError` into one red line and an exit code.

    Typer's standalone mode handles usage errors (exit 2) and `--help`; everything of the
    `AdaptSearchError` family raised by a command propagates to here, and so does an
    `OSError` on a path that no command checked beforehand.
    """
    try:
        app(args=argv, prog_name="adaptsearch")
    except AdaptSearchError as error:
        _fail(error, str(error), error.exit_code)
    except OSError as error:
        # A path the commands did not check themselves (an output folder that is a file, a
        # folder that cannot be created): one line naming the path, exit code 2 like bad input.
        _fail(error, _os_error_line(error), _OS_ERROR_EXIT)


def _fail(error: BaseException, line: str, exit_code: int) -> None:
    """Print `line` in red, or the traceback under --debug, and exit with `exit_code` either way."""
    if _state["debug"]:
        traceback.print_exception(error)
    else:
        err_console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(exit_code)


# Exit code of a file-system error outside the package's own checks: a bad path is bad input.
_OS_ERROR_EXIT = 2


def _os_error_line(error: OSError) -> str:
    reason = error.strerror or str(error)
    if error.filename is None:
        return f"{reason}; check the paths given on the command line"
    return f"cannot use {error.filename}: {reason}; check the paths given on the command line"
