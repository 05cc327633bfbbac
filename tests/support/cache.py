"""A build cache for fixture images under /var/tmp/berth-fixtures/<name>-<key>/.

The key is a hash of the recipe's inputs (builder source, package lists,
mirror, ...), so a changed recipe builds anew and an unchanged one is reused
across test sessions and checkouts.  A build happens in a temporary sibling
directory that is renamed into place only when complete: a killed build
never leaves a half cache entry.  An ``flock`` per entry makes concurrent
processes wait for one build instead of doing it twice.

Entries of an older recipe are removed once nobody has used them for two
days (``prune``, run after each build), so the cache does not grow without
bound while recipes change.
"""

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Union

CACHE_ROOT = os.environ.get("BERTH_FIXTURES_CACHE", "/var/tmp/berth-fixtures")
BUILD_INFO = "build.json"
LAST_USED = ".last-used"
STALE_AFTER = 2 * 24 * 3600


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
        _touch(final)
        return final
    with _locked(os.path.join(root, ".locks", f"{name}-{key}.lock")):
        if os.path.isdir(final):
            _touch(final)
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
            _touch(work)
            os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    prune(name, key, root)
    return final


def _touch(entry: str) -> None:
    with open(os.path.join(entry, LAST_USED), "a", encoding="ascii"):
        pass
    os.utime(os.path.join(entry, LAST_USED))


def prune(name: str, keep_key: str, root: str = CACHE_ROOT, older_than: float = STALE_AFTER) -> List[str]:
    """Remove other entries of *name* unused for *older_than* seconds; returns what was removed."""
    pattern = re.compile(re.escape(name) + "-([0-9a-f]{16})")
    removed = []
    for entry in sorted(os.listdir(root)):
        match = pattern.fullmatch(entry)
        if not match or match.group(1) == keep_key:
            continue
        path = os.path.join(root, entry)
        with _locked(os.path.join(root, ".locks", f"{entry}.lock")):
            try:
                last_used = os.stat(os.path.join(path, LAST_USED)).st_mtime
            except FileNotFoundError:
                last_used = os.stat(path).st_mtime
            if time.time() - last_used > older_than:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def build_info(entry: str) -> Dict[str, object]:
    with open(os.path.join(entry, BUILD_INFO), encoding="utf-8") as handle:
        return dict(json.load(handle))
