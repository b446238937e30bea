"""Benchmarks of adaptsearch: one module per question, each runnable as ``python -m benchmarks.NAME``.

See ``benchmarks/README.md`` for what each one measures, its goal and the last measured table.
"""
