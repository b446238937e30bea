"""Typer commands of `adaptsearch`, one module per group: data, study (run, best, dashboard, report), train."""

# Metavar of on/off options: Typer's rich help would otherwise show them as taking a
# "<bool>" value, although they take none.
FLAG = ""
