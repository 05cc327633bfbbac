"""A build cache for fixture images under /var/tmp/berth-fixtures/<name>-<key>/.

The key is a hash of the recipe's inputs (builder source, package lists,
mirror, ...), so a changed recipe builds anew and an unchanged one is reused
across test sessions and checkouts.  A build happens in a temporary sibling
directory that is renamed into place only when complete: a killed build
never leaves a half cache entry.  An ``flock`` per entry makes concurrent
processes wait for one build instead of doing it twice.
"""

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, Iterator, Union

CACHE_ROOT = os.environ.get("BERTH_FIXTURES_CACHE", "/var/tmp/berth-fixtures")
BUILD_INFO = "build.json"


def recipe_key(*parts: Union[str, bytes]) -> str:
    """A short, stable hash of the inputs of a recipe."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


def source_of(*paths: str) -> bytes:
    """The bytes of source files, for a key that changes whenever the builder changes."""
    chunks = []
    for path in paths:
        with open(path, "rb") as handle:
            chunks.append(handle.read())
    return b"\0".join(chunks)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def cached(name: str, key: str, build: Callable[[str], Dict[str, object]], root: str = CACHE_ROOT) -> str:
    """The directory of cache entry *name*-*key*, built by ``build(tmpdir)`` if missing.

    *build* fills the empty directory it is given and returns facts to record in
    ``build.json`` (the build time is added).
    """
    final = os.path.join(root, f"{name}-{key}")
    if os.path.isdir(final):
        return final
    with _locked(os.path.join(root, ".locks", f"{name}-{key}.lock")):
        if os.path.isdir(final):
            return final
        for stale in glob.glob(os.path.join(root, f".tmp-{name}-{key}-*")):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build; we hold the lock
        work = tempfile.mkdtemp(prefix=f".tmp-{name}-{key}-", dir=root)
        os.chmod(work, 0o755)
        began = time.monotonic()
        try:
            facts = dict(build(work))
            facts.update({"name": name, "key": key, "build_seconds": round(time.monotonic() - began, 2)})
            facts["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            with open(os.path.join(work, BUILD_INFO), "w", encoding="utf-8") as handle:
                json.dump(facts, handle, indent=2, sort_keys=True)
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return final


def build_info(entry: str) -> Dict[str, object]:
    with open(os.path.join(entry, BUILD_INFO), encoding="utf-8") as handle:
        return dict(json.load(handle))
