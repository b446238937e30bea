"""`adaptsearch train --params params.yaml`: the final retraining from an exported configuration."""

import typer


def register(app: typer.Typer) -> None:
    """Add the train command to the top-level app."""
