"""A small in-memory registry (OCI distribution API) for fast protocol tests.

Not a substitute for the real ``docker-registry`` of ``support.registry``:
it exists so unit tests can run in milliseconds and script what a real
registry will not do on demand (odd Content-Types, missing headers, chosen
status codes).  It serves on 127.0.0.1, port 0, in a thread:

* ``GET/HEAD /v2/``, ``/v2/<name>/manifests/<ref>``, ``/v2/<name>/blobs/<digest>``
  (with ``Range``), push (``POST``/``PATCH``/``PUT`` uploads, ``?mount=&from=``),
  ``PUT`` manifests, ``DELETE`` of uploads;
* authentication ``None``, ``"basic"`` (``users``) or ``"bearer"`` with its own
  token endpoint at ``/token`` that grants what the scope asks for (pull for
  anonymous users when ``anonymous_pull``) and records every token request;
* ``script(method, path_regex, status, times, body, headers)`` answers the next
  *times* matching requests with a canned response;
* every request is recorded in ``requests`` (method, path, headers).
"""

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import parse_qs, urlsplit

from .procs import IDLE_CONNECTION_TIMEOUT

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Recorded:
    method: str
    path: str
    headers: Dict[str, str]


@dataclass
class Scripted:
    method: str
    pattern: "re.Pattern[str]"
    status: int
    times: Optional[int]
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass
class TokenGrant:
    user: Optional[str]
    service: Optional[str]
    scopes: List[str]
    token: str


class QuietServer(ThreadingHTTPServer):
    """A threaded server that does not print tracebacks when a client hangs up mid-answer."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeRegistry:
    """An in-memory registry.  Use as a context manager or call ``start()``/``stop()``."""

    def __init__(
        self,
        auth: Optional[str] = None,
        *,
        users: Optional[Dict[str, str]] = None,
        anonymous_pull: bool = False,
        content_digest_header: bool = True,
        ranges: bool = True,
        token_expires_in: Optional[int] = 300,
        token_field: str = "token",
    ) -> None:
        self.auth = auth
        self.users = users or {}
        self.anonymous_pull = anonymous_pull
        self.content_digest_header = content_digest_header
        self.ranges = ranges
        self.token_expires_in = token_expires_in
        self.token_field = token_field
        self.blobs: Dict[str, bytes] = {}
        self.repo_blobs: Dict[str, Set[str]] = {}
        self.manifests: Dict[Tuple[str, str], Tuple[bytes, str]] = {}
        self.uploads: Dict[str, bytearray] = {}
        self.requests: List[Recorded] = []
        self.token_grants: List[TokenGrant] = []
        self.tokens: Dict[str, Tuple[Optional[str], Set[str]]] = {}
        self.scripted: List[Scripted] = []
        self.lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    # --- content -------------------------------------------------------------
    def add_blob(self, repository: str, data: bytes) -> Dict[str, Any]:
        digest = sha256(data)
        self.blobs[digest] = data
        self.repo_blobs.setdefault(repository, set()).add(digest)
        return {"digest": digest, "size": len(data)}

    def add_manifest(self, repository: str, body: bytes, content_type: str, tags: Tuple[str, ...] = ()) -> str:
        digest = sha256(body)
        self.manifests[(repository, digest)] = (body, content_type)
        for tag in tags:
            self.manifests[(repository, tag)] = (body, content_type)
        return digest

    def add_image(
        self,
        repository: str,
        layers: List[bytes],
        tag: str = "latest",
        architecture: str = "amd64",
        layer_media_type: str = OCI_LAYER_GZIP,
    ) -> Dict[str, Any]:
        """An OCI image whose layers are the given (opaque) bytes; returns its parts."""
        diff_ids = [sha256(b"diff-" + data) for data in layers]
        config = json.dumps(
            {"architecture": architecture, "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        ).encode()
        config_desc = dict(self.add_blob(repository, config), mediaType=OCI_CONFIG)
        layer_descs = [dict(self.add_blob(repository, data), mediaType=layer_media_type) for data in layers]
        manifest = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": layer_descs}
        ).encode()
        digest = self.add_manifest(repository, manifest, OCI_MANIFEST, (tag,) if tag else ())
        return {"manifest": manifest, "digest": digest, "config": config, "layers": layer_descs, "size": len(manifest)}

    def add_index(self, repository: str, images: List[Tuple[Dict[str, Any], Dict[str, str]]], tag: str) -> str:
        entries = [
            {"mediaType": OCI_MANIFEST, "digest": image["digest"], "size": image["size"], "platform": platform}
            for image, platform in images
        ]
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        return self.add_manifest(repository, body, OCI_INDEX, (tag,))

    def script(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: Optional[int] = 1,
        body: bytes = b"",
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        self.scripted.append(Scripted(method, re.compile(path_regex), status, times, body, dict(headers or {})))

    # --- life cycle ----------------------------------------------------------
    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> "FakeRegistry":
        registry = self

        class Handler(_Handler):
            owner = registry

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-registry", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> "FakeRegistry":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def count(self, method: str, path_regex: str) -> int:
        pattern = re.compile(path_regex)
        return sum(1 for r in self.requests if r.method == method and pattern.search(r.path))


class _Handler(BaseHTTPRequestHandler):
    owner: FakeRegistry
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        if "Transfer-Encoding" not in headers:
            headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, body, dict({"Content-Type": "application/json"}, **(headers or {})))

    def _handle(self) -> None:
        owner = self.owner
        path = urlsplit(self.path).path
        query = parse_qs(urlsplit(self.path).query)
        with owner.lock:
            owner.requests.append(Recorded(self.command, self.path, dict(self.headers.items())))
            scripted = next(
                (s for s in owner.scripted if s.method == self.command and s.pattern.search(self.path)), None
            )
            if scripted is not None and scripted.times is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    owner.scripted.remove(scripted)
        body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
        if scripted is not None:
            self._send(scripted.status, scripted.body, scripted.headers)
            return
        if path == "/token":
            self._token(query)
            return
        match = re.fullmatch(r"/v2/(?:(.+)/(manifests|blobs)/(?!uploads/)(.+)|(.+)/blobs/uploads/(.*))", path)
        if path != "/v2/" and match is None:
            self._error(404, "NOT_FOUND", "no route")
            return
        name = (match.group(1) or match.group(4)) if match else ""
        actions = ["pull"] if self.command in ("GET", "HEAD") else ["push"]
        if match and match.group(4) is not None and "from" in query:
            actions.append(f"from:{query['from'][0]}")
        if not self._authorized(name, actions):
            return
        if path == "/v2/":
            self._send(200, b"{}", {"Content-Type": "application/json"})
        elif match.group(2) == "manifests":
            self._manifest(name, match.group(3), body)
        elif match.group(2) == "blobs":
            self._blob(name, match.group(3))
        else:
            self._upload(name, match.group(5), query, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # --- auth ------------------------------------------------------------------
    def _authorized(self, name: str, actions: List[str]) -> bool:
        owner = self.owner
        if owner.auth is None:
            return True
        header = self.headers.get("Authorization", "")
        if owner.auth == "basic":
            if header.startswith("Basic "):
                user, _colon, password = base64.b64decode(header[6:]).decode().partition(":")
                if owner.users.get(user) == password:
                    return True
            self._error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": 'Basic realm="fake"'})
            return False
        scope = f"repository:{name}:{'pull' if actions == ['pull'] else 'pull,push'}"
        if header.startswith("Bearer "):
            granted = owner.tokens.get(header[7:])
            wanted = {f"{name}:{'pull' if a == 'pull' else 'push'}" for a in actions if not a.startswith("from:")}
            wanted |= {f"{a[5:]}:pull" for a in actions if a.startswith("from:")}
            if granted is not None and wanted <= granted[1]:
                return True
            if granted is not None:
                challenge = (
                    f'Bearer realm="http://{self.owner.host}/token",service="fake",scope="{scope}",'
                    'error="insufficient_scope"'
                )
                self._error(401, "UNAUTHORIZED", "insufficient scope", {"WWW-Authenticate": challenge})
                return False
        challenge = f'Bearer realm="http://{self.owner.host}/token",service="fake",scope="{scope}"'
        self._error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
        return False

    def _token(self, query: Dict[str, List[str]]) -> None:
        owner = self.owner
        header = self.headers.get("Authorization", "")
        user = None
        if header.startswith("Basic "):
            user, _colon, password = base64.b64decode(header[6:]).decode().partition(":")
            if owner.users.get(user) != password:
                self._send(401, b'{"details":"wrong password"}', {"Content-Type": "application/json"})
                return
        granted: Set[str] = set()
        scopes = query.get("scope", [])
        for scope in scopes:
            name, actions = scope.split(":")[1:]
            for action in actions.split(","):
                if user is not None or (owner.anonymous_pull and action == "pull"):
                    granted.add(f"{name}:{action}")
        token = uuid.uuid4().hex
        with owner.lock:
            owner.tokens[token] = (user, granted)
            owner.token_grants.append(TokenGrant(user, (query.get("service") or [None])[0], scopes, token))
        document: Dict[str, Any] = {owner.token_field: token}
        if owner.token_expires_in is not None:
            document["expires_in"] = owner.token_expires_in
        self._send(200, json.dumps(document).encode(), {"Content-Type": "application/json"})

    # --- API -------------------------------------------------------------------
    def _manifest(self, name: str, reference: str, body: bytes) -> None:
        owner = self.owner
        if self.command == "PUT":
            content_type = self.headers.get("Content-Type", "")
            digest = owner.add_manifest(
                name, body, content_type, () if reference.startswith("sha256:") else (reference,)
            )
            self._send(201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/manifests/{digest}"})
            return
        stored = owner.manifests.get((name, reference))
        if stored is None:
            self._error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {reference}")
            return
        data, content_type = stored
        headers = {"Content-Type": content_type}
        if owner.content_digest_header:
            headers["Docker-Content-Digest"] = sha256(data)
        self._send(200, data, headers)

    def _blob(self, name: str, digest: str) -> None:
        owner = self.owner
        data = owner.blobs.get(digest)
        if data is None or digest not in owner.repo_blobs.get(name, set()):
            self._error(404, "BLOB_UNKNOWN", f"blob unknown: {digest}")
            return
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if wanted and owner.ranges:
            start = int(wanted.group(1))
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(206, data[start:], headers)
            return
        self._send(200, data, headers)

    def _upload(self, name: str, upload_id: str, query: Dict[str, List[str]], body: bytes) -> None:
        owner = self.owner
        if self.command == "POST" and not upload_id:
            if "mount" in query and "from" in query:
                digest = query["mount"][0]
                if digest in owner.repo_blobs.get(query["from"][0], set()):
                    owner.repo_blobs.setdefault(name, set()).add(digest)
                    self._send(201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/blobs/{digest}"})
                    return
            new_id = uuid.uuid4().hex
            owner.uploads[new_id] = bytearray()
            self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{new_id}?_state=x", "Range": "0-0"})
            return
        if upload_id not in owner.uploads:
            self._error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
            return
        if self.command == "DELETE":
            del owner.uploads[upload_id]
            self._send(204)
            return
        if self.command == "PATCH":
            content_range = re.fullmatch(r"(\d+)-(\d+)", self.headers.get("Content-Range", ""))
            if content_range and int(content_range.group(1)) != len(owner.uploads[upload_id]):
                self._send(416)
                return
            owner.uploads[upload_id] += body
            end = len(owner.uploads[upload_id]) - 1
            self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{upload_id}?_state=y", "Range": f"0-{end}"})
            return
        data = bytes(owner.uploads.pop(upload_id) + body)
        digest = query.get("digest", [""])[0]
        if sha256(data) != digest:
            self._error(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
            return
        owner.add_blob(name, data)
        self._send(201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{name}/blobs/{digest}"})
