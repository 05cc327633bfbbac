"""Benchmarks of Berth against its peers (not tests: they print tables to compare by eye).

``.venv/bin/python -m bench [NAME...]`` runs the benchmarks registered in
``bench/__main__.py`` (all by default); each is also runnable alone as
``.venv/bin/python -m bench.NAME``.
"""
