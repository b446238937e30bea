"""`adaptsearch run | best | dashboard | report`: start, read and show Optuna studies."""

import typer


def register(app: typer.Typer) -> None:
    """Add the study commands to the top-level app."""
