"""A fault-injecting HTTP proxy to put in front of a real registry.

``FaultProxy(upstream_url)`` listens on 127.0.0.1 (port 0) and forwards every
request to the upstream registry, keeping the client's ``Host`` header so the
registry's own ``Location`` URLs point back at the proxy.  Rules, matched
against the request path by regular expression, change what the client sees:

==================  ===========================================================
``fail``            answer ``status`` (5xx, 429...) without asking upstream
``wrong_body``      same length, different bytes (a digest mismatch)
``truncate``        only the first ``keep`` bytes, with a matching Content-Length
``pad``             the real body plus extra bytes (longer than its descriptor)
``reset_after``     the real headers, ``nbytes`` of body, then a TCP reset
``redirect``        ``307`` to a second listener on another host name
                    (``localhost``) that serves the content like a CDN and
                    records the headers it received (Authorization must not be
                    among them)
``ignore_range``    drop ``Range`` before forwarding (the registry answers 200)
``delay``           sleep before answering
==================  ===========================================================

Each rule applies ``times`` times (``None`` = always) to requests of its
``method``.  Every request is recorded in ``requests``; the CDN listener's in
``redirected``.
"""

import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple, Union

from .procs import IDLE_CONNECTION_TIMEOUT

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: Dict[str, str]


@dataclass
class Rule:
    kind: str
    pattern: "re.Pattern[str]"
    method: str = "GET"
    times: Optional[int] = 1
    status: int = 500
    nbytes: int = 0
    data: bytes = b""
    seconds: float = 0.0
    hits: int = 0


@dataclass
class _Stash:
    path: str
    headers: Dict[str, str] = field(default_factory=dict)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            super().handle_error(request, client_address)


class FaultProxy:
    """See the module docstring.  Use as a context manager."""

    def __init__(self, upstream: str, verify: Union[bool, str] = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.verify = verify
        self.rules: List[Rule] = []
        self.requests: List[Recorded] = []
        self.redirected: List[Recorded] = []
        self.lock = threading.Lock()
        self._stash: Dict[str, _Stash] = {}
        self._servers: List[_QuietServer] = []
        self._session: Any = None

    # --- rules ------------------------------------------------------------------
    def _add(self, kind: str, path_regex: str, **options: Any) -> Rule:
        rule = Rule(kind, re.compile(path_regex), **options)
        with self.lock:
            self.rules.append(rule)
        return rule

    def fail(self, path_regex: str, status: int = 500, times: Optional[int] = 1, method: str = "GET") -> Rule:
        return self._add("fail", path_regex, status=status, times=times, method=method)

    def wrong_body(self, path_regex: str, times: Optional[int] = None) -> Rule:
        return self._add("wrong_body", path_regex, times=times)

    def truncate(self, path_regex: str, keep: int, times: Optional[int] = None) -> Rule:
        return self._add("truncate", path_regex, nbytes=keep, times=times)

    def pad(self, path_regex: str, data: bytes = b"extra", times: Optional[int] = None) -> Rule:
        return self._add("pad", path_regex, data=data, times=times)

    def reset_after(self, path_regex: str, nbytes: int, times: Optional[int] = 1) -> Rule:
        return self._add("reset_after", path_regex, nbytes=nbytes, times=times)

    def redirect(self, path_regex: str, times: Optional[int] = None) -> Rule:
        return self._add("redirect", path_regex, times=times)

    def ignore_range(self, path_regex: str, times: Optional[int] = None) -> Rule:
        return self._add("ignore_range", path_regex, times=times)

    def delay(self, path_regex: str, seconds: float, times: Optional[int] = None, method: str = "GET") -> Rule:
        return self._add("delay", path_regex, seconds=seconds, times=times, method=method)

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def _take(self, method: str, path: str) -> List[Rule]:
        """The rules that apply to this request, consuming one use of each."""
        taken = []
        with self.lock:
            for rule in list(self.rules):
                if rule.method != method or not rule.pattern.search(path):
                    continue
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                rule.hits += 1
                taken.append(rule)
        return taken

    # --- addresses and life cycle -----------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def cdn_url(self) -> str:
        """The redirect target: another host name (and port) than the proxy's."""
        return f"http://localhost:{self._servers[1].server_address[1]}"

    def count(self, method: str, path_regex: str) -> int:
        pattern = re.compile(path_regex)
        return sum(1 for r in self.requests if r.method == method and pattern.search(r.path))

    def start(self) -> "FaultProxy":
        import requests

        self._session = requests.Session()
        self._session.trust_env = False
        proxy = self

        class Main(_ProxyHandler):
            owner = proxy
            cdn = False

        class Cdn(_ProxyHandler):
            owner = proxy
            cdn = True

        for handler in (Main, Cdn):
            server = _QuietServer(("127.0.0.1", 0), handler)
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fault-proxy", daemon=True
            ).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        if self._session is not None:
            self._session.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    cdn: bool
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        owner = self.owner
        headers = dict(self.headers.items())
        record = Recorded(self.command, self.path, headers)
        with owner.lock:
            (owner.redirected if self.cdn else owner.requests).append(record)
        body = self._request_body()
        path = self.path
        if self.cdn:
            stash = owner._stash.get(path.lstrip("/"))
            if stash is None:
                self._reply(404, [], b"unknown redirect token")
                return
            path, upstream_headers = stash.path, dict(stash.headers)
            upstream_headers.update({k: v for k, v in headers.items() if k.lower() in ("range", "accept-encoding")})
            rules: List[Rule] = []
        else:
            rules = owner._take(self.command, path)
            upstream_headers = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        kinds = {rule.kind: rule for rule in rules}
        if "delay" in kinds:
            time.sleep(kinds["delay"].seconds)
        if "fail" in kinds:
            self._reply(kinds["fail"].status, [("Content-Type", "text/plain")], b"injected failure")
            return
        if "redirect" in kinds:
            token = secrets.token_hex(8)
            owner._stash[token] = _Stash(path, upstream_headers)
            self._reply(307, [("Location", f"{owner.cdn_url}/{token}")], b"")
            return
        if "ignore_range" in kinds:
            upstream_headers = {k: v for k, v in upstream_headers.items() if k.lower() != "range"}
        response = owner._session.request(
            self.command,
            owner.upstream + path,
            headers=upstream_headers,
            data=body if body or self.command in ("POST", "PUT", "PATCH") else None,
            stream=True,
            allow_redirects=False,
            verify=owner.verify,
            timeout=30,
        )
        try:
            out_headers = [(k, v) for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP]
            content = response.raw.read(decode_content=False) if self.command != "HEAD" else b""
            if self.command == "HEAD":
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in HOP_BY_HOP or key.lower() == "content-length":
                        self.send_header(key, value)
                self.end_headers()
                return
        finally:
            response.close()
        if "reset_after" in kinds:
            self.send_response(response.status_code)
            for key, value in out_headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content[: kinds["reset_after"].nbytes])
            self.wfile.flush()
            time.sleep(0.05)  # let the bytes reach the client before the reset
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if "wrong_body" in kinds and content:
            content = bytes(byte ^ 0xFF for byte in content)
        if "truncate" in kinds:
            content = content[: kinds["truncate"].nbytes]
        if "pad" in kinds:
            content += kinds["pad"].data
        self._reply(response.status_code, out_headers, content)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
