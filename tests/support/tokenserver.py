"""A small, real token server: Docker Hub's bearer-token flow on loopback.

The registry (``auth: token:``) answers an unauthenticated request with
``401`` and ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; the
client then asks this server::

    GET /token?service=SERVICE&scope=repository:NAME:pull,push   [Basic user:password]

and gets ``{"token", "access_token", "expires_in", "issued_at"}``.  The token
is a JWT (ES256 with an EC key, RS256 with an RSA key) whose certificate is in
the registry's ``rootcertbundle``.  Distribution 2.8 accepts two ways of
naming the key in the JWT header, both supported here (``key_id`` argument):

* ``x5c`` -- the signing certificate itself; the registry verifies its chain
  against the bundle (the bundle holds the signing certificate and its CA);
* ``kid`` -- libtrust's fingerprint of the public key; the registry looks it
  up among the keys of the certificates in the bundle.

Policy: anonymous clients may pull repositories matching ``public``
patterns (``fnmatch``); users in ``users`` get pull, push and delete on every
repository (``read_only`` users only pull); a wrong password is ``401``; a
``service`` other than ours is ``400``.  The OAuth2 form (``POST /token`` with
``grant_type=password``) is served too unless ``allow_post=False``.  Every
request is recorded in ``requests`` so tests can assert the scopes asked for
and that a client caches its tokens.
"""

import base64
import fnmatch
import hashlib
import json
import os
import secrets
import shutil
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from . import procs
from .pki import CertificateAuthority, KeyPair
from .procs import IDLE_CONNECTION_TIMEOUT

DEFAULT_SERVICE = "berth-test-registry"
DEFAULT_ISSUER = "berth-test-token-server"
KEY_ID_STYLES = ("x5c", "kid")


@dataclass
class TokenRequest:
    """One request the token server answered."""

    method: str
    service: Optional[str]
    scopes: List[str]
    user: Optional[str]
    status: int
    granted: List[Dict[str, Any]] = field(default_factory=list)
    at: float = 0.0


def libtrust_key_id(public_key_der: bytes) -> str:
    """libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, 4-char groups."""
    encoded = base64.b32encode(hashlib.sha256(public_key_der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def parse_scope(scope: str) -> Tuple[str, str, List[str]]:
    """``repository:NAME:pull,push`` -> (type, name, actions); a name may itself contain ``:``."""
    parts = scope.split(":")
    if len(parts) < 3:
        raise ValueError(f"malformed scope {scope!r}")
    return parts[0], ":".join(parts[1:-1]), [a for a in parts[-1].split(",") if a]


class JwtSigner:
    """Signs registry tokens with a key whose certificate the registry trusts."""

    def __init__(self, pair: KeyPair, chain: Sequence[str], key_id: str = "x5c") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if key_id not in KEY_ID_STYLES:
            raise ValueError(f"key_id must be one of {KEY_ID_STYLES}, not {key_id!r}")
        with open(pair.key, "rb") as handle:
            self._key = serialization.load_pem_private_key(handle.read(), password=None)
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            self.algorithm = "ES256"
        elif isinstance(self._key, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        else:
            raise ValueError(f"{pair.key}: only EC P-256 and RSA keys can sign registry tokens")
        ders = []
        for path in chain:
            with open(path, "rb") as handle:
                ders.append(x509.load_pem_x509_certificate(handle.read()).public_bytes(serialization.Encoding.DER))
        spki = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.header: Dict[str, Any] = {"typ": "JWT", "alg": self.algorithm}
        if key_id == "x5c":
            self.header["x5c"] = [base64.b64encode(der).decode() for der in ders]
        else:
            self.header["kid"] = libtrust_key_id(spki)

    def sign(self, claims: Dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

        signing_input = (
            _b64url(json.dumps(self.header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        ).encode()
        if self.algorithm == "ES256":
            der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
            r, s = utils.decode_dss_signature(der)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,union-attr]
        return signing_input.decode() + "." + _b64url(signature)


class TokenServer:
    """The token server; ``start()`` serves on a free loopback port in a background thread."""

    def __init__(
        self,
        *,
        service: str = DEFAULT_SERVICE,
        issuer: str = DEFAULT_ISSUER,
        username: str = "berth",
        password: Optional[str] = None,
        users: Optional[Dict[str, str]] = None,
        read_only: Iterable[str] = (),
        public: Iterable[str] = ("library/*", "public/*"),
        expires_in: int = 300,
        key_type: str = "ec",
        key_id: str = "x5c",
        tls: bool = False,
        allow_post: bool = True,
        ca: Optional[CertificateAuthority] = None,
        state_dir: Optional[str] = None,
    ) -> None:
        self.service = service
        self.issuer = issuer
        self.username = username
        self.password = password or secrets.token_hex(8)
        self.users: Dict[str, str] = {username: self.password, **(users or {})}
        self.read_only: Set[str] = set(read_only)
        self.public: List[str] = list(public)
        self.expires_in = expires_in
        self.tls = tls
        self.allow_post = allow_post
        self._owns_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="berth-tokenserver-", dir="/var/tmp")
        self.ca = ca or CertificateAuthority(os.path.join(self.state_dir, "pki"))
        suffix = secrets.token_hex(3)
        self.signing = self.ca.issue_signing(f"token-signing-{suffix}", key_type=key_type)
        self.rootcertbundle = os.path.join(self.state_dir, f"rootcertbundle-{suffix}.pem")
        with open(self.rootcertbundle, "w", encoding="ascii") as out:
            for path in (self.signing.cert, self.ca.cert):
                with open(path, encoding="ascii") as handle:
                    out.write(handle.read())
        self.signer = JwtSigner(self.signing, [self.signing.cert], key_id=key_id)
        self._server_cert = self.ca.issue_server(f"token-server-{suffix}") if tls else None
        self.port: Optional[int] = None
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._requests: List[TokenRequest] = []

    # -- addresses --------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the token server has no port yet: call start() first")
        return f"{'https' if self.tls else 'http'}://{procs.LOOPBACK}:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def ca_file(self) -> str:
        return self.ca.cert

    # -- records ----------------------------------------------------------------------
    @property
    def requests(self) -> List[TokenRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, entry: TokenRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    # -- tokens -----------------------------------------------------------------------
    def grant(self, user: Optional[str], scopes: Iterable[str]) -> List[Dict[str, Any]]:
        """The access entries this server grants *user* (None = anonymous) for *scopes*."""
        access = []
        for scope in scopes:
            kind, name, actions = parse_scope(scope)
            allowed: Set[str] = set()
            if kind == "repository":
                if user is not None:
                    allowed = {"pull"} if user in self.read_only else {"pull", "push", "delete", "*"}
                elif any(fnmatch.fnmatchcase(name, pattern) for pattern in self.public):
                    allowed = {"pull"}
            elif kind == "registry" and name == "catalog" and user is not None:
                allowed = {"*"}
            access.append({"type": kind, "name": name, "actions": [a for a in actions if a in allowed]})
        return access

    def issue(
        self,
        user: Optional[str],
        access: List[Dict[str, Any]],
        *,
        expires_in: Optional[int] = None,
        issued_at: Optional[float] = None,
        audience: Optional[str] = None,
        issuer: Optional[str] = None,
    ) -> str:
        """Sign a token; tests use the optional arguments to forge expired or foreign tokens."""
        lifetime = self.expires_in if expires_in is None else expires_in
        now = time.time() if issued_at is None else issued_at
        claims = {
            "iss": issuer or self.issuer,
            "sub": user or "",
            "aud": audience or self.service,
            "exp": int(now) + lifetime,
            "nbf": int(now) - 1,
            "iat": int(now),
            "jti": secrets.token_hex(12),
            "access": access,
        }
        return self.signer.sign(claims)

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> "TokenServer":
        if self._httpd is not None:
            return self
        handler = _handler_for(self)
        address = (procs.LOOPBACK, self.port or 0)
        httpd = ThreadingHTTPServer(address, handler)
        httpd.daemon_threads = True
        if self._server_cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self._server_cert.cert, self._server_cert.key)
            httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"tokenserver-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- request handling (called from the handler threads) -----------------------------
    def answer(
        self, method: str, query: Dict[str, List[str]], authorization: Optional[str]
    ) -> Tuple[int, Dict[str, Any]]:
        service = (query.get("service") or [None])[0]
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        user: Optional[str] = None
        status = 200
        body: Dict[str, Any]
        if method == "POST":
            user, password = (query.get("username") or [None])[0], (query.get("password") or [None])[0]
            grant_type = (query.get("grant_type") or [""])[0]
            if grant_type != "password" or user is None:
                status, body = 400, {"error": "unsupported_grant_type", "details": "only grant_type=password"}
            elif self.users.get(user) != password:
                status, body = 401, {"error": "invalid_grant", "details": "incorrect username or password"}
        elif authorization:
            user, status, body = self._basic(authorization)
        if status == 200 and service != self.service:
            status, body = 400, {"details": f"unknown service {service!r}; this server issues for {self.service!r}"}
        granted: List[Dict[str, Any]] = []
        if status == 200:
            try:
                granted = self.grant(user, scopes)
            except ValueError as exc:
                status, body = 400, {"details": str(exc)}
        if status == 200:
            now = time.time()
            token = self.issue(user, granted, issued_at=now)
            issued_at = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = {"access_token": token, "expires_in": self.expires_in, "issued_at": issued_at}
            if method == "GET":
                body["token"] = token
            else:
                body["scope"] = " ".join(scopes)
        self._record(TokenRequest(method, service, scopes, user, status, granted, time.time()))
        return status, body

    def _basic(self, authorization: str) -> Tuple[Optional[str], int, Dict[str, Any]]:
        scheme, value = authorization.split(" ", 1) if " " in authorization else (authorization, "")
        if scheme.lower() != "basic":
            return None, 401, {"details": "only Basic credentials are accepted here"}
        try:
            user, password = base64.b64decode(value.strip()).decode().split(":", 1)
        except (ValueError, UnicodeDecodeError):
            return None, 400, {"details": "malformed Basic credentials"}
        if self.users.get(user) != password:
            return user, 401, {"details": "incorrect username or password"}
        return user, 200, {}


def _handler_for(server: TokenServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_CONNECTION_TIMEOUT

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read ``TokenServer.requests`` instead."""

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._send(404, {"details": "not found"})
                return
            status, body = server.answer("GET", parse_qs(url.query), self.headers.get("Authorization"))
            self._send(status, body)

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = self.rfile.read(length).decode(errors="replace")
            if url.path != "/token" or not server.allow_post:
                self._send(404, {"details": "not found"})
                return
            status, body = server.answer("POST", parse_qs(form), None)
            self._send(status, body)

        def _send(self, status: int, body: Dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", f'Basic realm="{server.service}"')
            self.end_headers()
            self.wfile.write(data)

    return Handler
