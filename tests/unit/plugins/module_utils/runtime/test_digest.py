"""Digests are validated before use (G2) and hashed while streaming."""

import hashlib
import io

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import digest
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import IntegrityError, InvalidArgument

SHA256 = "sha256:" + hashlib.sha256(b"abc").hexdigest()
SHA512 = "sha512:" + hashlib.sha512(b"abc").hexdigest()


@pytest.mark.parametrize("value", [SHA256, SHA512])
def test_registered_algorithms_with_exact_lowercase_hex_are_accepted(value: str) -> None:
    assert digest.validate_digest(value) == value
    assert digest.is_valid_digest(value)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("sha256:../../x", "64 lowercase hex"),
        ("sha256:../../../etc/passwd" + "a" * 40, "64 lowercase hex"),
        ("sha256:" + "a" * 63, "64 lowercase hex"),
        ("sha256:" + "a" * 65, "64 lowercase hex"),
        ("sha256:" + "A" * 64, "64 lowercase hex"),
        ("sha512:" + "a" * 64, "128 lowercase hex"),
        ("md5:" + "a" * 32, "unsupported algorithm"),
        ("sha384:" + "a" * 96, "unsupported algorithm"),
        ("SHA256:" + "a" * 64, "unsupported algorithm"),
        ("a" * 64, "not a digest"),
        ("sha256:" + "a" * 64 + "\n", "64 lowercase hex"),
        ("sha256:" + "a" * 63 + "/", "64 lowercase hex"),
        ("", "not a digest"),
    ],
)
def test_malformed_digests_are_refused_with_the_rule(value: str, rule: str) -> None:
    with pytest.raises(InvalidArgument, match=rule):
        digest.validate_digest(value, "layer digest")
    assert not digest.is_valid_digest(value)


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        digest.validate_digest(None)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidArgument) as caught:
        digest.validate_digest("sha256:" + "x" * 5000)
    assert len(str(caught.value)) < 300


def test_split_and_hash_helpers() -> None:
    assert digest.split_digest(SHA256) == ("sha256", SHA256[7:])
    assert digest.sha256_bytes(b"abc") == SHA256
    assert digest.digest_bytes(b"abc", "sha512") == SHA512
    digest.verify_bytes(b"abc", SHA512)
    with pytest.raises(IntegrityError, match="does not match"):
        digest.verify_bytes(b"abd", SHA256, "config")


def test_digest_writer_hashes_counts_and_enforces_the_limit() -> None:
    target = io.BytesIO()
    writer = digest.DigestWriter(target, "sha256", limit=5)
    writer.write(b"ab")
    writer.write(b"c")
    assert (writer.digest, writer.size, target.getvalue()) == (SHA256, 3, b"abc")
    with pytest.raises(IntegrityError, match="longer than the 5 bytes"):
        writer.write(b"def")
    assert target.getvalue() == b"abc"


def test_hashing_reader_reports_progress() -> None:
    seen = []
    reader = digest.HashingReader(io.BytesIO(b"abc"), on_read=seen.append)
    assert reader.read(2) + reader.read() == b"abc"
    assert reader.read() == b""
    assert (reader.digest, reader.size, seen) == (SHA256, 3, [2, 3])


def test_counter_reset_starts_over() -> None:
    counter = digest.DigestCounter(SHA256)
    counter.update(b"garbage")
    counter.reset()
    counter.update(b"abc")
    assert (counter.digest, counter.size) == (SHA256, 3)
