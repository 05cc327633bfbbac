"""A throw-away certificate authority made with the ``openssl`` command.

Test registries and the token server need certificates that a client can
verify against a CA of our own: the CA certificate is kept twice, once as a
file (``verify=`` of requests, ``ca_file``) and once alone in a directory
(``ca_dir``) for tools that take a certificate directory (skopeo refuses a
directory that also holds a private key).
"""

import os
import subprocess
import uuid
from dataclasses import dataclass
from typing import List

VALID_DAYS = 30


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM files."""

    cert: str
    key: str


class CertificateAuthority:
    """A CA under *directory*; issues server and signing certificates.

    Keys are ECDSA P-256: fast to make, accepted by Go's TLS stack (the
    registry), Python's ssl module and the registry's token verifier.
    """

    def __init__(self, directory: str, name: str = "Berth test CA") -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.ca_dir = os.path.join(directory, "ca-only")
        os.makedirs(self.ca_dir, exist_ok=True)
        self.cert = os.path.join(self.ca_dir, "ca.crt")
        self.key = os.path.join(directory, "ca.key")
        if not os.path.exists(self.cert):
            self._create(f"{name} {uuid.uuid4().hex[:8]}")

    def _create(self, common_name: str) -> None:
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            self.key,
            "-out",
            self.cert,
            "-days",
            str(VALID_DAYS),
            "-subj",
            f"/CN={common_name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )

    def issue(self, name: str, extensions: List[str], common_name: str = "localhost", key_type: str = "ec") -> KeyPair:
        """Issue a certificate *name*.crt / *name*.key with the given X.509v3 extension lines.

        *key_type* is ``ec`` (P-256) or ``rsa`` (2048 bits).
        """
        cert = os.path.join(self.directory, f"{name}.crt")
        key = os.path.join(self.directory, f"{name}.key")
        csr = os.path.join(self.directory, f"{name}.csr")
        ext = os.path.join(self.directory, f"{name}.ext")
        with open(ext, "w", encoding="ascii") as handle:
            handle.write("\n".join(extensions) + "\n")
        _openssl(
            "req",
            *_key_options(key_type),
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={common_name}",
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            self.cert,
            "-CAkey",
            self.key,
            "-set_serial",
            str(uuid.uuid4().int >> 64),
            "-out",
            cert,
            "-days",
            str(VALID_DAYS),
            "-extfile",
            ext,
        )
        os.unlink(csr)
        return KeyPair(cert=cert, key=key)

    def issue_server(self, name: str = "server") -> KeyPair:
        """A TLS server certificate valid for 127.0.0.1 and localhost (Go and Python insist on the SAN)."""
        return self.issue(
            name,
            [
                "basicConstraints=critical,CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
        )

    def issue_signing(self, name: str = "token-signing", key_type: str = "ec") -> KeyPair:
        """A certificate for a JWT signing key (the token server's)."""
        return self.issue(
            name,
            ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"],
            common_name="Berth test token issuer",
            key_type=key_type,
        )


def _key_options(key_type: str) -> List[str]:
    if key_type == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    if key_type == "rsa":
        return ["-newkey", "rsa:2048"]
    raise ValueError(f"unknown key type {key_type!r}: use 'ec' or 'rsa'")


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
