"""`adaptsearch data ...`: generate the demo world and inspect datasets."""

import typer

app = typer.Typer(help="Generate demo data and inspect datasets.", no_args_is_help=True)
