"""Make ``ansible_collections.berth.containers`` importable for plain pytest.

ansible-test units runs from a physical ansible_collections/berth/containers
tree and needs nothing; plain pytest in the checkout gets a symlinked tree
under .cache/collections put first on sys.path (Python follows symlinks).
"""

import os
import sys

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collection_path() -> None:
    # The tests' own helpers (tests/support) import as ``support``, under ansible-test too.
    tests_dir = os.path.join(CHECKOUT, "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    if f"{os.sep}ansible_collections{os.sep}berth{os.sep}containers" in CHECKOUT:
        return
    base = os.path.join(CHECKOUT, ".cache", "collections")
    link = os.path.join(base, "ansible_collections", "berth", "containers")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(CHECKOUT, link)
    if base not in sys.path:
        sys.path.insert(0, base)


_collection_path()
