"""OpenPGP key parsing: fingerprints as gpg computes them, damaged keys refused."""

import hashlib
import os
import struct

import pytest

from ansible_collections.berth.containers.plugins.module_utils.engine import openpgp
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# Fingerprints as `gpg --show-keys --with-subkey-fingerprints` prints them.
DOCKER_PRIMARY = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
DOCKER_SUBKEY = "D3306A018370199E527AE7997EA0A9C3F273FCD8"
TEST_KEY = "8C3C5E570320CBE4D0B42783A7890F1795D07BE6"


def _fixture(name: str) -> bytes:
    with open(os.path.join(FIXTURES, name), "rb") as handle:
        return handle.read()


def test_docker_release_key_has_the_published_fingerprint() -> None:
    key = openpgp.parse_public_key(_fixture("docker-ce.asc"))
    assert key.fingerprint == DOCKER_PRIMARY
    assert key.subkey_fingerprints == (DOCKER_SUBKEY,)
    assert key.armored == _fixture("docker-ce.asc")


def test_binary_key_is_armored_for_installation() -> None:
    binary = _fixture("test-key.gpg")
    key = openpgp.parse_public_key(binary)
    assert key.fingerprint == TEST_KEY
    assert key.armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    assert key.armored.endswith(b"-----END PGP PUBLIC KEY BLOCK-----\n")
    assert openpgp.dearmor(key.armored) == binary
    assert openpgp.parse_public_key(key.armored).fingerprint == TEST_KEY


def test_armored_and_binary_forms_agree() -> None:
    assert openpgp.dearmor(_fixture("test-key.asc")) == _fixture("test-key.gpg")


def test_crc24_of_empty_input_is_the_init_value() -> None:
    assert openpgp.crc24(b"") == 0xB704CE


def test_damaged_armor_is_detected_by_its_checksum() -> None:
    armored = bytearray(_fixture("docker-ce.asc"))
    position = armored.index(b"mQINBFit2io") + 20
    armored[position : position + 1] = b"A" if armored[position : position + 1] != b"A" else b"B"
    with pytest.raises(InvalidArgument, match="checksum does not match"):
        openpgp.parse_public_key(bytes(armored))


def test_truncated_armor_is_refused() -> None:
    text = _fixture("docker-ce.asc")
    with pytest.raises(InvalidArgument, match="truncated"):
        openpgp.parse_public_key(text[: len(text) // 2])


def test_truncated_binary_is_refused() -> None:
    binary = _fixture("test-key.gpg")
    with pytest.raises(InvalidArgument, match="truncated"):
        openpgp.parse_public_key(binary[:-10])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<html><body>404 Not Found</body></html>", "not an OpenPGP public key"),
        (b"", "not an OpenPGP public key"),
        (b"-----BEGIN PGP PRIVATE KEY BLOCK-----\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n", "private key"),
    ],
)
def test_things_that_are_not_public_keys(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        openpgp.parse_public_key(data)


def _packet(tag: int, body: bytes) -> bytes:
    """A new-format packet with a one- or two-octet length."""
    if len(body) < 192:
        return bytes([0xC0 | tag, len(body)]) + body
    length = len(body) - 192
    return bytes([0xC0 | tag, (length >> 8) + 192, length & 0xFF]) + body


def test_secret_key_material_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="secret key material"):
        openpgp.parse_public_key(_packet(5, b"\x04" + b"\0" * 20))


def test_key_block_must_start_with_a_public_key() -> None:
    with pytest.raises(InvalidArgument, match="packet type 13"):
        openpgp.parse_public_key(_packet(13, b"user id"))


def test_two_primary_keys_are_refused() -> None:
    binary = _fixture("test-key.gpg") + _fixture("test-key.gpg")
    with pytest.raises(InvalidArgument, match="holds 2 keys"):
        openpgp.parse_public_key(binary)


def test_old_format_packet_headers_are_read() -> None:
    body = b"\x04" + os.urandom(40)
    old_format = bytes([0x80 | (6 << 2) | 1]) + struct.pack(">H", len(body)) + body
    key = openpgp.parse_public_key(old_format)
    expected = hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).hexdigest().upper()
    assert key.fingerprint == expected


def test_two_octet_new_format_lengths_are_read() -> None:
    body = b"\x04" + bytes(range(256)) * 2
    key = openpgp.parse_public_key(_packet(6, body))
    assert key.fingerprint == hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body).hexdigest().upper()


def test_version_6_fingerprints_use_sha256() -> None:
    body = b"\x06" + os.urandom(50)
    key = openpgp.parse_public_key(_packet(6, body))
    assert key.fingerprint == hashlib.sha256(b"\x9b" + struct.pack(">I", len(body)) + body).hexdigest().upper()


def test_version_3_keys_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="version 3 is not supported"):
        openpgp.parse_public_key(_packet(6, b"\x03" + b"\0" * 20))


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("9DC8 5822 9FC7 DD38 854A  E2D8 8D81 803C 0EBF CD88", DOCKER_PRIMARY),
        ("9dc858229fc7dd38854ae2d88d81803c0ebfcd88", DOCKER_PRIMARY),
        ("0x9DC858229FC7DD38854AE2D88D81803C0EBFCD88", DOCKER_PRIMARY),
        ("AB" * 32, "AB" * 32),
    ],
)
def test_fingerprints_are_normalized(given: str, normalized: str) -> None:
    assert openpgp.normalize_fingerprint(given) == normalized


@pytest.mark.parametrize(
    ("given", "message"),
    [("0EBFCD88", "short key ids can be forged"), ("8D81803C0EBFCD88", "16 hex digits"), ("XYZ", "not hexadecimal")],
)
def test_short_or_bad_fingerprints_are_refused(given: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        openpgp.normalize_fingerprint(given)


def test_fingerprint_check_accepts_primary_or_subkey_and_refuses_others() -> None:
    key = openpgp.parse_public_key(_fixture("docker-ce.asc"))
    openpgp.check_fingerprint(key, DOCKER_PRIMARY)
    openpgp.check_fingerprint(key, DOCKER_SUBKEY)
    with pytest.raises(InvalidArgument, match=f"has fingerprint {DOCKER_PRIMARY}, not the expected {TEST_KEY}"):
        openpgp.check_fingerprint(key, TEST_KEY)
