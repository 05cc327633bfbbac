"""Content digests: strict validation, and hashing while bytes stream past.

A digest from a registry, a manifest or a user names a file in the store and
a path in a URL, so it is checked *before* any such use (CVE-2024-3727:
``sha256:../../x`` must never become a path).  Only the algorithms the OCI
image spec registers are accepted, with their exact lowercase hex lengths.
"""

import re
from typing import Any, BinaryIO, Callable, Optional, Tuple

from .errors import IntegrityError, InvalidArgument

# algorithm -> length of its lowercase hex encoding (OCI image-spec, descriptor.md "Registered algorithms").
ALGORITHMS = {"sha256": 64, "sha512": 128}
_ENCODED = {name: re.compile(f"[a-f0-9]{{{length}}}") for name, length in ALGORITHMS.items()}


def validate_digest(text: Any, what: str = "digest") -> str:
    """Return *text* unchanged if it is a well-formed sha256/sha512 digest, else raise.

    The message names the value (shortened) and the rule it broke; *what*
    says where the value came from ("digest of layer 2", "Docker-Content-Digest").
    """
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be a string like sha256:<64 hex digits>, not {type(text).__name__}")
    algorithm, sep, encoded = text.partition(":")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not sep:
        raise InvalidArgument(f"{what} {shown!r} is not a digest: expected ALGORITHM:HEX like sha256:<64 hex digits>")
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"{what} {shown!r} uses an unsupported algorithm; only sha256 and sha512 are accepted")
    if not _ENCODED[algorithm].fullmatch(encoded):
        raise InvalidArgument(
            f"{what} {shown!r} is malformed: {algorithm} needs exactly {ALGORITHMS[algorithm]} lowercase hex digits"
        )
    return text


def is_valid_digest(text: Any) -> bool:
    try:
        validate_digest(text)
    except InvalidArgument:
        return False
    return True


def split_digest(digest: str) -> Tuple[str, str]:
    """``sha256:abc...`` -> ``("sha256", "abc...")`` after validation."""
    algorithm, _colon, encoded = validate_digest(digest).partition(":")
    return algorithm, encoded


def new_hasher(digest_or_algorithm: str) -> Any:
    """A hashlib object for the algorithm of a digest (or an algorithm name)."""
    algorithm = digest_or_algorithm.partition(":")[0]
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}; only sha256 and sha512 are accepted")
    import hashlib  # here: OpenSSL's start-up costs ~3 ms of every command that hashes nothing

    return hashlib.new(algorithm)


def digest_bytes(data: bytes, algorithm: str = "sha256") -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return f"{algorithm}:{hasher.hexdigest()}"


def sha256_bytes(data: bytes) -> str:
    """``"sha256:<hex>"`` of *data*."""
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_bytes(data: bytes, expected: str, what: str = "content") -> None:
    """Raise :class:`IntegrityError` unless *data* hashes to *expected*."""
    actual = digest_bytes(data, split_digest(expected)[0])
    if actual != expected:
        raise IntegrityError(f"{what} does not match its digest: expected {expected}, got {actual}")


class DigestCounter:
    """Hash and count bytes fed to it; the core of both stream wrappers."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm.partition(":")[0]
        self._hasher = new_hasher(self.algorithm)
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hasher.update(data)
        self.size += len(data)

    def reset(self) -> None:
        self._hasher = new_hasher(self.algorithm)
        self.size = 0

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self._hasher.hexdigest()}"


class DigestWriter(DigestCounter):
    """A write-only file wrapper that hashes and counts what goes through it.

    ``limit`` makes a write that would pass that many bytes fail *before*
    anything beyond the limit reaches the file (a blob longer than its
    descriptor's size is refused as soon as it shows it).
    """

    def __init__(
        self, target: BinaryIO, algorithm: str = "sha256", limit: Optional[int] = None, what: str = "blob"
    ) -> None:
        super().__init__(algorithm)
        self.target = target
        self.limit = limit
        self.what = what

    def write(self, data: bytes) -> int:
        if self.limit is not None and self.size + len(data) > self.limit:
            raise IntegrityError(f"{self.what} is longer than the {self.limit} bytes its descriptor announces")
        self.target.write(data)
        self.update(data)
        return len(data)


class HashingReader(DigestCounter):
    """A read-only file wrapper that hashes and counts what is read through it."""

    def __init__(
        self,
        source: Any,
        algorithm: str = "sha256",
        on_read: Optional[Callable[[int], None]] = None,
    ) -> None:
        super().__init__(algorithm)
        self.source = source
        self.on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        if data:
            self.update(data)
            if self.on_read is not None:
                self.on_read(self.size)
        return data

    def readable(self) -> bool:
        return True
