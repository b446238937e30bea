"""Typer commands of `adaptsearch`, one module per group: data, study (run, best, dashboard, report), train."""
