"""Benchmarks of Berth against its peers (not tests: they print tables to compare by eye).

``.venv/bin/python -m bench [NAME...]`` runs the benchmarks registered in
``bench/__main__.py`` (all by default); each is also runnable alone as
``.venv/bin/python -m bench.NAME``.
"""

import os
import sys

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TESTS = os.path.join(CHECKOUT, "tests")
if _TESTS not in sys.path:
    # The benchmarks build their fixtures with the tests' support package.
    sys.path.insert(0, _TESTS)
import conftest  # noqa: F401  # pylint: disable=unused-import,wrong-import-position  # puts the collection on sys.path
