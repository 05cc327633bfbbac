"""Just enough OpenPGP to install a repository signing key safely.

A package repository is only as trustworthy as the key that verifies it, and
the key usually comes from the same (possibly mirrored) server as the
packages.  Checking the key's fingerprint against a known value needs no
``gpg`` on the host: a version 4 fingerprint is the SHA-1 of the public-key
packet (RFC 4880 section 12.2), versions 5 and 6 use SHA-256 (RFC 9580
section 5.5.4).  Keys are stored ASCII-armored, which both ``rpm`` and apt's
``Signed-By`` (for files ending in ``.asc``) accept.
"""

import base64
import binascii
import hashlib
import re
import struct
from typing import List, NamedTuple, Tuple

from ..runtime.errors import InvalidArgument

ARMOR_BEGIN = b"-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOR_END = b"-----END PGP PUBLIC KEY BLOCK-----"
PUBLIC_KEY_TAG = 6
PUBLIC_SUBKEY_TAG = 14
SECRET_KEY_TAGS = (5, 7)
_CRC24_INIT = 0xB704CE
_CRC24_POLY = 0x1864CFB
_FINGERPRINT_PREFIX = {4: b"\x99", 5: b"\x9a", 6: b"\x9b"}


class PublicKey(NamedTuple):
    """A parsed public key: the armored bytes to install and what identifies it."""

    armored: bytes
    fingerprint: str
    subkey_fingerprints: Tuple[str, ...]


def crc24(data: bytes) -> int:
    """The CRC-24 of RFC 4880 section 6.1, used in the armor checksum line."""
    crc = _CRC24_INIT
    for byte in data:
        crc ^= byte << 16
        for _bit in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc & 0xFFFFFF


def armor(binary: bytes) -> bytes:
    """ASCII-armor a binary public key block."""
    body = base64.b64encode(binary)
    lines = [body[index : index + 64] for index in range(0, len(body), 64)]
    checksum = base64.b64encode(struct.pack(">I", crc24(binary))[1:])
    return b"\n".join([ARMOR_BEGIN, b"", *lines, b"=" + checksum, ARMOR_END]) + b"\n"


def dearmor(data: bytes, what: str = "the GPG key") -> bytes:
    """Return the binary packets of an armored (or already binary) public key block."""
    stripped = data.strip()
    if stripped[:1] and stripped[0] & 0x80:
        return data
    start = stripped.find(ARMOR_BEGIN)
    if start < 0:
        if b"-----BEGIN PGP PRIVATE KEY BLOCK-----" in stripped:
            raise InvalidArgument(f"{what} is a private key: give the public key (gpg --armor --export KEYID)")
        raise InvalidArgument(
            f"{what} is not an OpenPGP public key: it has neither binary key packets nor "
            f"a '{ARMOR_BEGIN.decode()}' line (a web server may have answered with an error page)"
        )
    end = stripped.find(ARMOR_END, start)
    if end < 0:
        raise InvalidArgument(f"{what}: the armored key has no '{ARMOR_END.decode()}' line; it is truncated")
    # Armor headers ("Version: ...") precede the body; base64 never contains ':'.
    lines = [
        line
        for line in stripped[start + len(ARMOR_BEGIN) : end].decode("ascii", "replace").splitlines()
        if ":" not in line
    ]
    checksum = None
    body: List[str] = []
    for line in (line.strip() for line in lines):
        if not line:
            continue
        if line.startswith("=") and len(line) == 5:
            checksum = line[1:]
        else:
            body.append(line)
    try:
        binary = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"{what}: the armored key is not valid base64") from None
    if checksum is not None:
        try:
            expected = int.from_bytes(base64.b64decode(checksum), "big")
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"{what}: the armor checksum line is not valid base64") from None
        if crc24(binary) != expected:
            raise InvalidArgument(f"{what}: the armor checksum does not match; the key was damaged in transit")
    return binary


def _packets(binary: bytes, what: str) -> List[Tuple[int, bytes]]:
    """Split binary OpenPGP data into (tag, body) pairs (RFC 4880 section 4.2)."""
    packets = []
    offset = 0
    while offset < len(binary):
        header = binary[offset]
        offset += 1
        if not header & 0x80:
            raise InvalidArgument(f"{what}: byte {offset - 1} is not an OpenPGP packet header")
        if header & 0x40:
            tag = header & 0x3F
            if offset >= len(binary):
                raise InvalidArgument(f"{what}: truncated packet header")
            first = binary[offset]
            if first < 192:
                length, offset = first, offset + 1
            elif first < 224:
                if offset + 2 > len(binary):
                    raise InvalidArgument(f"{what}: truncated packet header")
                length, offset = ((first - 192) << 8) + binary[offset + 1] + 192, offset + 2
            elif first == 255:
                if offset + 5 > len(binary):
                    raise InvalidArgument(f"{what}: truncated packet header")
                length, offset = struct.unpack(">I", binary[offset + 1 : offset + 5])[0], offset + 5
            else:
                raise InvalidArgument(f"{what}: partial-length packets do not belong in a public key")
        else:
            tag = (header >> 2) & 0x0F
            length_type = header & 0x03
            if length_type == 3:
                length = len(binary) - offset
            else:
                size = (1, 2, 4)[length_type]
                if offset + size > len(binary):
                    raise InvalidArgument(f"{what}: truncated packet header")
                length = int.from_bytes(binary[offset : offset + size], "big")
                offset += size
        if offset + length > len(binary):
            raise InvalidArgument(f"{what}: a packet runs past the end of the data; the key is truncated")
        packets.append((tag, binary[offset : offset + length]))
        offset += length
    return packets


def key_fingerprint(body: bytes, what: str = "the GPG key") -> str:
    """The fingerprint of a public-key or public-subkey packet body, upper-case hex."""
    version = body[0] if body else 0
    if version == 4:
        return hashlib.sha1(b"\x99" + struct.pack(">H", len(body)) + body, usedforsecurity=False).hexdigest().upper()
    if version in (5, 6):
        prefix = _FINGERPRINT_PREFIX[version]
        return hashlib.sha256(prefix + struct.pack(">I", len(body)) + body).hexdigest().upper()
    raise InvalidArgument(f"{what}: OpenPGP key version {version} is not supported (versions 4, 5 and 6 are)")


def parse_public_key(data: bytes, what: str = "the GPG key") -> PublicKey:
    """Validate a public key block (armored or binary) and identify its primary key."""
    binary = dearmor(data, what)
    packets = _packets(binary, what)
    if not packets:
        raise InvalidArgument(f"{what} is empty")
    if any(tag in SECRET_KEY_TAGS for tag, _body in packets):
        raise InvalidArgument(f"{what} contains secret key material: give only the public key")
    if packets[0][0] != PUBLIC_KEY_TAG:
        raise InvalidArgument(f"{what} does not start with a public key packet (but with packet type {packets[0][0]})")
    primary = [body for tag, body in packets if tag == PUBLIC_KEY_TAG]
    if len(primary) > 1:
        raise InvalidArgument(f"{what} holds {len(primary)} keys: give exactly the one key that signs the repository")
    subkeys = tuple(key_fingerprint(body, what) for tag, body in packets if tag == PUBLIC_SUBKEY_TAG)
    armored = data if data.lstrip().startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----") else armor(binary)
    if not armored.endswith(b"\n"):
        armored += b"\n"
    return PublicKey(armored=armored, fingerprint=key_fingerprint(primary[0], what), subkey_fingerprints=subkeys)


def normalize_fingerprint(value: str) -> str:
    """Upper-case hex without spaces; refuse key ids that are too short to trust."""
    compact = re.sub(r"[\s:]", "", value).upper()
    if compact.startswith("0X"):
        compact = compact[2:]
    if not re.fullmatch(r"[0-9A-F]+", compact or "-"):
        raise InvalidArgument(f"gpg_fingerprint {value!r} is not hexadecimal")
    if len(compact) not in (40, 64):
        raise InvalidArgument(
            f"gpg_fingerprint {value!r} has {len(compact)} hex digits: give the full fingerprint "
            "(40 digits, or 64 for version 6 keys); short key ids can be forged"
        )
    return compact


def check_fingerprint(key: PublicKey, expected: str, what: str = "the GPG key") -> None:
    """Raise unless *expected* names the primary key or one of its subkeys."""
    wanted = normalize_fingerprint(expected)
    if wanted != key.fingerprint and wanted not in key.subkey_fingerprints:
        raise InvalidArgument(
            f"{what} has fingerprint {key.fingerprint}, not the expected {wanted}: "
            "refusing to trust it (check the key source or the gpg_fingerprint option)"
        )
