"""A client for the Registry HTTP API v2 / OCI distribution spec, on ``requests``.

Pull side: resolve a reference to one platform's manifest (through an index
when there is one), tell cheaply whether a tag moved, and stream blobs to
disk verified, resumable and retried.  Push side: blob existence, cross-
repository mounts, uploads and manifest PUTs.

Where the bytes come from follows Docker's ``daemon.json`` semantics
(RUNTIME-REFERENCE §1.8): docker.io tries ``registry-mirrors`` in order and
then the canonical registry, a mirror's failure falls through to the next
endpoint, and one pull uses the single endpoint that answered its manifest.
Registries listed in ``insecure-registries`` get HTTPS without verification,
then plain HTTP.  Loopback registries may also fall back to plain HTTP, but
when they speak TLS it is verified (unlike dockerd), so a missing CA is a
clear error instead of a silently unverified connection.

Security rules kept here: every digest is validated before it becomes part
of a URL or path; manifest, config, token and error bodies are read with a
size cap; ``Authorization`` never follows a redirect to another origin;
descriptor ``urls`` are never fetched; ``verify=`` is passed on every request
because ``REQUESTS_CA_BUNDLE`` would otherwise override the session's.
"""

import contextlib
import glob
import ipaddress
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlencode, urljoin, urlsplit

from . import fsutil
from .auth import Credentials, RegistryAuth, load_credentials
from .config import DaemonConfig
from .digest import DigestCounter, digest_bytes, sha256_bytes, split_digest, validate_digest
from .errors import (
    AuthenticationError,
    BerthError,
    IntegrityError,
    InvalidArgument,
    ManifestError,
    NotFound,
    RegistryError,
)
from .manifest import (
    INDEX_MEDIA_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_MEDIA_TYPES,
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    compatible_platforms,
    normalize_content_type,
    parse_config,
    parse_manifest,
    select_manifest,
)
from .reference import Reference

log = logging.getLogger(__name__)

DOCKER_HUB_URL = "https://registry-1.docker.io"
DEFAULT_CERTS_DIRS = ("/etc/berth/certs.d", "/etc/docker/certs.d")
SYSTEM_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)
MAX_ERROR_BODY = 1024 * 1024
MAX_REDIRECTS = 10
CHUNK_SIZE = 1024 * 1024
# Uploads up to this size go in one PUT; larger blobs are sent in PATCH chunks of this size.
MONOLITHIC_UPLOAD_LIMIT = 32 * 1024 * 1024
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_RETRY_STATUSES = (429, 500, 502, 503, 504)
_ALWAYS_INSECURE = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

Verify = Union[bool, str]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Endpoint:
    """A base URL serving ``/v2/`` and how its TLS is checked."""

    url: str
    verify: Verify = True
    mirror: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def is_tls(self) -> bool:
        return self.url.startswith("https://")


@dataclass(frozen=True)
class ResolvedImage:
    """One platform's manifest of a reference, and where it was found.

    Everything the store needs to fetch and record the image: blobs must be
    fetched from ``endpoint`` (the one that answered the manifest).
    """

    reference: Reference
    endpoint: Endpoint
    manifest: Manifest
    index: Optional[Index] = None
    platform: Optional[Platform] = None
    requested_platform: Optional[Platform] = None

    @property
    def digest(self) -> str:
        """Digest of the platform manifest."""
        return self.manifest.digest

    @property
    def media_type(self) -> str:
        return self.manifest.media_type

    @property
    def raw(self) -> bytes:
        return self.manifest.raw

    @property
    def index_digest(self) -> Optional[str]:
        return self.index.digest if self.index is not None else None

    @property
    def repo_digest(self) -> str:
        """What the tag points to (the index when there is one), as ``docker images --digests`` shows."""
        return self.index_digest or self.digest

    @property
    def config(self) -> Descriptor:
        return self.manifest.config

    @property
    def layers(self) -> Tuple[Descriptor, ...]:
        return self.manifest.layers


class _Retry(Exception):
    """A transient failure worth another attempt (5xx, reset, short read)."""


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _split_host(domain: str) -> str:
    """``[::1]:5000`` -> ``::1``; ``host:5000`` -> ``host``."""
    if domain.startswith("["):
        return domain[1 : domain.find("]")]
    return domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain


def _read_capped(response: Any, limit: int, what: str, error: type = RegistryError) -> bytes:
    """The body of *response* (decoded), refusing more than *limit* bytes without buffering them."""
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        response.close()
        raise error(f"{what} is {length} bytes, more than the {limit} allowed; refusing to read it")
    import urllib3

    chunks = []
    total = 0
    try:
        while True:
            chunk = response.raw.read(65536, decode_content=True)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise error(f"{what} is more than the {limit} bytes allowed; refusing to read it")
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise RegistryError(f"connection lost while reading {what}: {_short(exc)}", code="UNREACHABLE") from None
    finally:
        response.close()
    return b"".join(chunks)


def _error_details(body: bytes) -> List[Tuple[str, str]]:
    """(code, message) pairs from a registry error body (``{"errors": [...]}``)."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    result = []
    for item in errors:
        if isinstance(item, dict):
            result.append((str(item.get("code", "")).upper(), str(item.get("message", ""))[:300]))
    return result


class _Connection:
    """An endpoint's session and authorization, used for one repository's credentials."""

    def __init__(self, client: "RegistryClient", endpoint: Endpoint, auth: RegistryAuth) -> None:
        self.client = client
        self.endpoint = endpoint
        self.auth = auth
        self.session = client._session(endpoint)

    def url(self, path: str) -> str:
        return path if "://" in path else self.endpoint.url + path

    def request(
        self,
        method: str,
        path: str,
        scope: str,
        *,
        headers: Optional[Dict[str, str]] = None,
        body: Any = None,
    ) -> Any:
        """Send one request, handling the auth handshake and redirects; return any final response but 401."""
        url = self.url(path)
        same_origin = _origin(url) == _origin(self.endpoint.url)
        sent = self.auth.header(scope) if same_origin else None
        first = True
        for _round in range(3):
            request_headers = dict(headers or {})
            if sent:
                request_headers["Authorization"] = sent
            response = self._follow(method, url, request_headers, body=body)
            challenge = response.headers.get("WWW-Authenticate")
            if response.status_code != 401 or not challenge or not same_origin:
                return response
            response.close()
            sent = self.auth.unauthorized(challenge, scope, sent, first, self._fetch_token)
            first = False
        raise self.auth.needs_credentials()

    def _follow(self, method: str, url: str, headers: Dict[str, str], body: Any = None) -> Any:
        for _hop in range(MAX_REDIRECTS + 1):
            data = body() if callable(body) else body
            response = self.client._send(self.session, self.endpoint, method, url, headers=headers, data=data)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECT_STATUSES or not location or method not in ("GET", "HEAD"):
                return response
            response.close()
            target = urljoin(url, location)
            if _origin(target) != _origin(url):
                # dist-spec: MUST NOT forward Authorization across hosts (G1).
                headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
            url = target
        raise RegistryError(f"registry {self.endpoint.host} redirected more than {MAX_REDIRECTS} times")

    def _fetch_token(self, url: str, headers: Dict[str, str]) -> Tuple[int, bytes]:
        response = self._follow("GET", url, headers)
        return response.status_code, _read_capped(response, MAX_ERROR_BODY, "the token server's answer")

    def error(self, response: Any, subject: str, body: Optional[bytes] = None) -> BerthError:
        """The user-facing error for a failed response about *subject* ("image x:y", "blob sha256:...")."""
        if body is None:
            try:
                body = _read_capped(response, MAX_ERROR_BODY, "error body")
            except BerthError:
                body = b""
        details = _error_details(body)
        code = details[0][0] if details else ""
        message = details[0][1] if details else ""
        status = response.status_code
        host = self.endpoint.host
        codes = {item[0] for item in details}
        if status == 404 or codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "TAG_UNKNOWN", "BLOB_UNKNOWN"}:
            return NotFound(f"{subject} not found in registry {host}")
        if status == 401 or "UNAUTHORIZED" in codes:
            if self.auth.credentials is None:
                return self.auth.needs_credentials()
            return self.auth.refused()
        if status == 403 or "DENIED" in codes:
            who = f"user {self.auth.credentials.username}" if self.auth.credentials else "anonymous access"
            return AuthenticationError(
                f"registry {host} denied {who} access to {subject}" + (f": {message}" if message else ""),
                status=status,
                code=code or "DENIED",
            )
        if status == 429 or "TOOMANYREQUESTS" in codes:
            return RegistryError(
                f"registry {host} is rate-limiting requests (HTTP 429) for {subject}; try again later or use a"
                " mirror or credentials",
                status=status,
                code=code or "TOOMANYREQUESTS",
            )
        detail = f" {code}: {message}" if code or message else ""
        return RegistryError(f"registry {host} answered HTTP {status} for {subject}:{detail}", status=status, code=code)


class RegistryClient:
    """Talks to registries for pulls and pushes.  Thread-safe: blobs may be fetched in parallel.

    Build one per operation (a pull, a module run) and :meth:`close` it, or
    use it as a context manager.
    """

    def __init__(
        self,
        config: Optional[DaemonConfig] = None,
        credentials: Optional[Credentials] = None,
        *,
        auth_file: Optional[str] = None,
        validate_certs: bool = True,
        ca_path: Optional[str] = None,
        certs_dirs: Sequence[str] = DEFAULT_CERTS_DIRS,
        docker_hub_url: str = DOCKER_HUB_URL,
        timeout: Tuple[float, float] = (10.0, 60.0),
        max_attempts: int = 5,
        retry_backoff: float = 0.5,
        user_agent: str = "berth",
    ) -> None:
        self.config = config or DaemonConfig()
        self.credentials = credentials
        self.auth_file = auth_file
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.certs_dirs = tuple(certs_dirs)
        self.docker_hub_url = docker_hub_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.user_agent = user_agent
        self._lock = threading.RLock()
        self._sessions: Dict[Tuple[str, Verify], Any] = {}
        self._auths: Dict[Tuple[str, Optional[Credentials]], RegistryAuth] = {}
        self._preferred: Dict[str, str] = self._load_preferred()
        self._bundles: Dict[Tuple[str, ...], str] = {}
        self._tempdirs: List[str] = []
        self._finalizer = weakref.finalize(self, RegistryClient._cleanup, self._sessions, self._tempdirs)
        if ca_path is not None and not os.path.exists(ca_path):
            raise InvalidArgument(
                f"ca_path {ca_path} does not exist; give a CA certificate file or a directory of *.crt"
            )

    # --- lifecycle -----------------------------------------------------------

    @staticmethod
    def _cleanup(sessions: Dict[Any, Any], tempdirs: List[str]) -> None:
        for session in list(sessions.values()):
            session.close()
        sessions.clear()
        for directory in tempdirs:
            shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- endpoints and TLS -------------------------------------------------------

    def _preferred_path(self) -> str:
        return os.path.join(self.config.exec_root, "registry-endpoints.json")

    MAX_PREFERRED = 32

    def _load_preferred(self) -> Dict[str, str]:
        """Which scheme answered last for registries tried over HTTPS then HTTP (loopback, insecure).

        Kept in the exec root (a tmpfs: forgotten at reboot) so that the next
        command does not pay a failed TLS handshake first; it only orders the
        endpoints, so a registry that changed scheme is still found.
        """
        data = None
        if self.config.path is None:
            return {}  # a configuration made in code (tests, tools): keep nothing on the host
        with contextlib.suppress(OSError, ValueError):
            data = fsutil.read_json(self._preferred_path())
        if not isinstance(data, dict):
            return {}
        return {key: value for key, value in data.items() if isinstance(key, str) and isinstance(value, str)}

    def _remember_preferred(self, domain: str, url: str, first: bool) -> None:
        """Note that *url* answered for *domain*; only a fallback (not the *first* endpoint) is worth keeping."""
        with self._lock:
            if first and domain not in self._preferred:
                return
            if self._preferred.get(domain) == url:
                return
            self._preferred.pop(domain, None)
            if not first:
                self._preferred[domain] = url
            while len(self._preferred) > self.MAX_PREFERRED:
                self._preferred.pop(next(iter(self._preferred)))
            snapshot = dict(self._preferred)
        if self.config.path is None:
            return
        with contextlib.suppress(OSError):
            fsutil.makedirs(self.config.exec_root, 0o700)
            fsutil.write_json_atomic(self._preferred_path(), snapshot, durable=False)

    def is_insecure(self, domain: str) -> bool:
        """Listed in ``insecure-registries`` (host[:port] or a CIDR containing its address)."""
        host = _split_host(domain).lower()
        networks = []
        for entry in self.config.insecure_registries:
            if entry.lower() == domain.lower():
                return True
            with contextlib.suppress(ValueError):
                networks.append(ipaddress.ip_network(entry, strict=False))
        return bool(networks) and any(address in net for address in self._addresses(host) for net in networks)

    @staticmethod
    def _addresses(host: str) -> List[Any]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, None)
        except (OSError, UnicodeError):
            return []
        return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]

    @staticmethod
    def is_loopback(domain: str) -> bool:
        host = _split_host(domain).lower()
        if host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in _ALWAYS_INSECURE)

    def endpoints(self, reference: Reference, push: bool = False) -> List[Endpoint]:
        """Where to look for *reference*, in order (mirrors only for docker.io pulls)."""
        if reference.is_docker_hub:
            result = []
            if not push:
                for mirror in self.config.registry_mirrors:
                    host = urlsplit(mirror).netloc
                    verify = False if self.is_insecure(host) else self._verify_for(host)
                    result.append(Endpoint(mirror, verify if mirror.startswith("https://") else False, mirror=True))
            hub = urlsplit(self.docker_hub_url).netloc
            result.append(
                Endpoint(
                    self.docker_hub_url, self._verify_for(hub) if self.docker_hub_url.startswith("https://") else False
                )
            )
            return result
        domain = reference.domain
        if self.is_insecure(domain):
            result = [Endpoint(f"https://{domain}", False), Endpoint(f"http://{domain}", False)]
        elif self.is_loopback(domain):
            result = [Endpoint(f"https://{domain}", self._verify_for(domain)), Endpoint(f"http://{domain}", False)]
        else:
            return [Endpoint(f"https://{domain}", self._verify_for(domain))]
        preferred = self._preferred.get(domain)
        result.sort(key=lambda endpoint: endpoint.url != preferred)
        return result

    def _verify_for(self, host: str) -> Verify:
        """``verify=`` for HTTPS to *host*: False, or a CA bundle path (system roots + any extra CAs)."""
        if not self.validate_certs:
            return False
        extra: List[str] = []
        if self.ca_path is not None:
            extra = (
                sorted(glob.glob(os.path.join(self.ca_path, "*.crt")))
                if os.path.isdir(self.ca_path)
                else [self.ca_path]
            )
        else:
            for base in self.certs_dirs:
                extra += sorted(glob.glob(os.path.join(base, host, "*.crt")))
        return self._bundle(tuple(extra))

    def _bundle(self, extra: Tuple[str, ...]) -> Verify:
        system = next((path for path in SYSTEM_CA_BUNDLES if os.path.isfile(path)), None)
        if not extra:
            return system or True
        with self._lock:
            if extra not in self._bundles:
                if not self._tempdirs:
                    self._tempdirs.append(tempfile.mkdtemp(prefix="berth-ca-"))
                parts = []
                for path in (*extra, system):
                    if path:
                        try:
                            with open(path, "rb") as handle:
                                parts.append(handle.read().rstrip(b"\n") + b"\n")
                        except OSError as exc:
                            raise InvalidArgument(f"cannot read CA certificate {path}: {exc.strerror}") from None
                bundle = os.path.join(self._tempdirs[0], f"bundle-{len(self._bundles)}.pem")
                fsutil.write_atomic(bundle, b"".join(parts), 0o644)
                self._bundles[extra] = bundle
            return self._bundles[extra]

    def _session(self, endpoint: Endpoint) -> Any:
        from .httpimport import import_requests

        requests = import_requests()
        from requests.adapters import HTTPAdapter

        key = (endpoint.url, endpoint.verify)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = requests.Session()
                session.trust_env = False
                session.headers["User-Agent"] = self.user_agent
                pool = max(4, self.config.max_concurrent_downloads + 2, self.config.max_concurrent_uploads + 2)
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool, max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._sessions[key] = session
            return session

    def _connection(self, endpoint: Endpoint, reference: Reference) -> _Connection:
        if endpoint.mirror:
            credentials = load_credentials(endpoint.host, "", self.auth_file)
        elif self.credentials is not None:
            credentials = self.credentials
        else:
            credentials = load_credentials(reference.domain, reference.repository, self.auth_file)
        key = (endpoint.url, credentials)
        with self._lock:
            auth = self._auths.get(key)
            if auth is None:
                auth = self._auths[key] = RegistryAuth(endpoint.host, credentials)
        return _Connection(self, endpoint, auth)

    def _send(
        self,
        session: Any,
        endpoint: Endpoint,
        method: str,
        url: str,
        *,
        headers: Dict[str, str],
        data: Any,
    ) -> Any:
        import requests
        from requests.utils import get_environ_proxies

        verify = (
            endpoint.verify if _origin(url)[:2] == _origin(endpoint.url)[:2] else self._verify_for(urlsplit(url).netloc)
        )
        if verify is False and url.startswith("https://"):
            # The user chose this (insecure-registries, validate_certs=false): do not warn on every request.
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        try:
            return session.request(
                method,
                url,
                headers=headers,
                data=data,
                stream=True,  # bodies are read through _read_capped or streamed to disk, never whole
                allow_redirects=False,
                verify=verify,
                timeout=self.timeout,
                proxies=get_environ_proxies(url),
            )
        except requests.exceptions.SSLError as exc:
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" )'\"")
                raise RegistryError(
                    f"the TLS certificate of {urlsplit(url).netloc} is not trusted ({reason or 'verify failed'}); give"
                    " its CA with ca_path, or put it in /etc/berth/certs.d/"
                    f"{urlsplit(url).netloc}/ca.crt",
                    code="CERTIFICATE",
                ) from None
            raise RegistryError(f"TLS with {urlsplit(url).netloc} failed: {_short(exc)}", code="UNREACHABLE") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise RegistryError(
                f"cannot reach registry {urlsplit(url).netloc}: {_short(exc)}", code="UNREACHABLE"
            ) from None

    def _on_endpoints(self, reference: Reference, operation: Callable[[_Connection], Any], push: bool = False) -> Any:
        """Run *operation* on the first endpoint that can do it (mirrors fall through on any error)."""
        endpoints = self.endpoints(reference, push)
        certificate_error: Optional[RegistryError] = None
        for position, endpoint in enumerate(endpoints):
            last = position == len(endpoints) - 1
            try:
                result = operation(self._connection(endpoint, reference))
            except BerthError as exc:
                unreachable = isinstance(exc, RegistryError) and exc.code in ("UNREACHABLE", "CERTIFICATE")
                if isinstance(exc, RegistryError) and exc.code == "CERTIFICATE" and not endpoint.mirror:
                    # Reported even if the plain-HTTP fallback then fails: it is the error that explains.
                    certificate_error = certificate_error or exc
                if last:
                    if certificate_error is not None and not endpoint.is_tls:
                        raise certificate_error from None
                    raise
                if endpoint.mirror or unreachable:
                    log.debug("endpoint %s failed for %s, trying the next one: %s", endpoint.url, reference, exc)
                    continue
                raise
            if not endpoint.mirror and len(endpoints) > 1:
                self._remember_preferred(reference.domain, endpoint.url, position == 0)
            return result
        raise RegistryError(f"no endpoint to reach {reference.display}")

    # --- pull: manifests -------------------------------------------------------------

    @staticmethod
    def _scope(reference: Reference, push: bool = False) -> str:
        return f"repository:{reference.repository}:{'pull,push' if push else 'pull'}"

    def _get_manifest(
        self, connection: _Connection, reference: Reference, identifier: str, method: str = "GET"
    ) -> Tuple[Any, bytes]:
        """(response, body) of a manifest request, retried on 5xx except on mirrors."""
        path = f"/v2/{reference.repository}/manifests/{quote(identifier, safe=':')}"
        attempts = 1 if connection.endpoint.mirror else self.max_attempts
        subject = f"image {reference.display}"
        for attempt in range(1, attempts + 1):
            response = connection.request(method, path, self._scope(reference), headers={"Accept": MANIFEST_ACCEPT})
            if response.status_code == 200:
                body = (
                    b""
                    if method == "HEAD"
                    else _read_capped(response, MAX_MANIFEST_SIZE, f"manifest of {reference.display}", ManifestError)
                )
                response.close()
                return response, body
            if response.status_code in _RETRY_STATUSES and attempt < attempts:
                response.close()
                self._sleep(attempt)
                continue
            raise connection.error(response, subject, b"" if method == "HEAD" else None)
        raise RegistryError(f"no answer for {subject}")

    def _manifest_at(
        self, connection: _Connection, reference: Reference, identifier: str, expected: Optional[str]
    ) -> Union[Manifest, Index]:
        response, body = self._get_manifest(connection, reference, identifier)
        what = f"manifest {identifier} of {reference.name}" if expected else f"manifest of {reference.display}"
        document = parse_manifest(body, response.headers.get("Content-Type"), expected, what)
        announced = response.headers.get("Docker-Content-Digest")
        if announced and expected is None:
            try:
                validate_digest(announced, "Docker-Content-Digest")
            except InvalidArgument as exc:
                raise ManifestError(f"registry {connection.endpoint.host}: {exc}") from None
            if digest_bytes(body, split_digest(announced)[0]) != announced:
                raise IntegrityError(
                    f"manifest of {reference.display} from {connection.endpoint.host} does not match the"
                    f" Docker-Content-Digest {announced} the registry announced"
                )
        return document

    def resolve(self, reference: Reference, platform: Optional[Platform] = None) -> ResolvedImage:
        """Find the manifest of *reference* for *platform* (default: this host)."""

        def at(connection: _Connection) -> ResolvedImage:
            document = self._manifest_at(connection, reference, reference.identifier, reference.digest)
            index = None
            chosen = None
            if isinstance(document, Index):
                index = document
                entry = select_manifest(index, platform, reference.display)
                document = self._manifest_at(connection, reference, entry.digest, entry.digest)
                if len(document.raw) != entry.size:
                    raise IntegrityError(
                        f"manifest {entry.digest} of {reference.display} is {len(document.raw)} bytes, but the"
                        f" index says {entry.size}"
                    )
                if isinstance(document, Index):
                    raise ManifestError(f"{reference.display}: nested indexes are not supported")
                chosen = entry.platform
            return ResolvedImage(reference, connection.endpoint, document, index, chosen, platform)

        return self._on_endpoints(reference, at)

    def manifest_digest(self, reference: Reference, platform: Optional[Platform] = None) -> str:
        """The digest of the platform manifest *reference* points to now, with the fewest requests.

        A HEAD answers it when the registry sends ``Docker-Content-Digest`` for a
        single manifest; for an index the index itself is fetched (by digest)
        and the platform's entry digest returned, so callers compare like with like.
        """

        def at(connection: _Connection) -> str:
            response = self._get_manifest(connection, reference, reference.identifier, "HEAD")[0]
            media_type = normalize_content_type(response.headers.get("Content-Type"))
            announced = response.headers.get("Docker-Content-Digest") or reference.digest
            if announced is not None:
                try:
                    validate_digest(announced, "Docker-Content-Digest")
                except InvalidArgument as exc:
                    raise ManifestError(f"registry {connection.endpoint.host}: {exc}") from None
                if media_type in MANIFEST_MEDIA_TYPES:
                    return announced
                if media_type in INDEX_MEDIA_TYPES:
                    document = self._manifest_at(connection, reference, announced, announced)
                    if isinstance(document, Index):
                        return select_manifest(document, platform, reference.display).digest
                    return document.digest
            document = self._manifest_at(connection, reference, reference.identifier, reference.digest)
            if isinstance(document, Index):
                return select_manifest(document, platform, reference.display).digest
            return document.digest

        return self._on_endpoints(reference, at)

    # --- pull: blobs -----------------------------------------------------------------

    def _blob_path(self, reference: Reference, digest: str) -> str:
        return f"/v2/{reference.repository}/blobs/{validate_digest(digest, 'blob digest')}"

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(self.retry_backoff * (2 ** (attempt - 1)), 10.0))

    def fetch_blob_bytes(self, resolved: ResolvedImage, descriptor: Descriptor, limit: int = MAX_CONFIG_SIZE) -> bytes:
        """A small blob (a config) in memory, verified against *descriptor*."""
        digest = validate_digest(descriptor.digest, "blob digest")
        if descriptor.size > limit:
            raise ManifestError(f"blob {digest} is {descriptor.size} bytes, more than the {limit} allowed in memory")
        connection = self._connection(resolved.endpoint, resolved.reference)
        subject = f"blob {digest} of image {resolved.reference.display}"
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = connection.request(
                    "GET", self._blob_path(resolved.reference, digest), self._scope(resolved.reference)
                )
                if response.status_code in _RETRY_STATUSES:
                    response.close()
                    raise _Retry(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    raise connection.error(response, subject)
                body = _read_capped(response, descriptor.size, subject, IntegrityError)
            except (_Retry, RegistryError) as exc:
                if (isinstance(exc, RegistryError) and exc.code != "UNREACHABLE") or attempt == self.max_attempts:
                    raise
                self._sleep(attempt)
                continue
            actual = digest_bytes(body, split_digest(digest)[0])
            if len(body) != descriptor.size or actual != digest:
                raise IntegrityError(
                    f"{subject} does not match its descriptor: expected {digest} ({descriptor.size} bytes),"
                    f" got {actual} ({len(body)} bytes)"
                )
            return body
        raise RegistryError(f"could not fetch {subject}")

    def fetch_config(self, resolved: ResolvedImage) -> ImageConfig:
        """The image config, verified and checked against the manifest (and the requested platform)."""
        body = self.fetch_blob_bytes(resolved, resolved.config)
        config = parse_config(body, resolved.config, len(resolved.layers))
        wanted = resolved.requested_platform
        if (
            wanted is not None
            and resolved.index is None
            and config.platform.normalized() not in compatible_platforms(wanted)
        ):
            raise ManifestError(
                f"image {resolved.reference.display} is for platform {config.platform}, not the requested"
                f" {wanted}; available platforms: {config.platform}"
            )
        return config

    def fetch_blob(
        self, resolved: ResolvedImage, descriptor: Descriptor, dest_path: str, progress: Optional[Progress] = None
    ) -> str:
        """Download a blob to *dest_path*, verified; return its digest.

        Streams raw bytes into ``dest_path + ".partial"`` (resuming one left
        by an earlier run), aborting as soon as the blob exceeds its size,
        resuming with ``Range`` after a connection drop (up to ``max_attempts``
        with backoff; a ``200`` restarts from zero; a digest mismatch after a
        resume retries once from zero), then fsyncs and renames.  On an
        integrity failure nothing is left behind; on other failures at most
        the ``.partial`` for the next run to resume.  Concurrent calls must
        use distinct *dest_path* values.
        """
        digest = validate_digest(descriptor.digest, "blob digest")
        reference = resolved.reference
        subject = f"blob {digest} of image {reference.display}"
        connection = self._connection(resolved.endpoint, reference)
        partial = dest_path + ".partial"
        counter = DigestCounter(digest)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        handle: BinaryIO = os.fdopen(os.open(partial, flags, 0o600), "r+b")
        try:
            self._resume_partial(handle, counter, descriptor.size)
            resumed = counter.size > 0
            restarted = False
            attempt = 0
            while True:
                try:
                    identity = self._download(
                        connection,
                        reference,
                        descriptor,
                        handle=handle,
                        counter=counter,
                        subject=subject,
                        progress=progress,
                    )
                except (_Retry, RegistryError) as exc:
                    if isinstance(exc, RegistryError) and exc.code != "UNREACHABLE":
                        raise
                    attempt += 1
                    if attempt >= self.max_attempts:
                        raise RegistryError(
                            f"download of {subject} from {resolved.endpoint.host} failed after {attempt} attempts:"
                            f" {exc}",
                            code="UNREACHABLE",
                        ) from None
                    if counter.size and not getattr(exc, "resumable", True):
                        self._truncate(handle, counter)
                    resumed = resumed or counter.size > 0
                    log.debug("retrying %s at byte %d after: %s", subject, counter.size, exc)
                    self._sleep(attempt)
                    continue
                if counter.digest == digest and counter.size == descriptor.size:
                    break
                if resumed and not restarted and identity:
                    log.debug("%s does not match after a resume; downloading it again from zero", subject)
                    self._truncate(handle, counter)
                    resumed, restarted = False, True
                    continue
                raise IntegrityError(
                    f"{subject} from {resolved.endpoint.host} does not match its digest: got {counter.digest}"
                    f" ({counter.size} bytes)"
                )
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(partial, dest_path)
            fsutil.fsync_dir(os.path.dirname(dest_path) or ".")
            return digest
        except IntegrityError:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        finally:
            if not handle.closed:
                handle.close()

    @staticmethod
    def _resume_partial(handle: BinaryIO, counter: DigestCounter, size: int) -> None:
        """Hash what an earlier run left in the partial file, or empty it when it cannot be a prefix."""
        handle.seek(0, os.SEEK_END)
        if handle.tell() > size:
            handle.truncate(0)
        handle.seek(0)
        while True:
            chunk = handle.read(CHUNK_SIZE)
            if not chunk:
                break
            counter.update(chunk)

    @staticmethod
    def _truncate(handle: BinaryIO, counter: DigestCounter) -> None:
        handle.seek(0)
        handle.truncate(0)
        counter.reset()

    def _download(
        self,
        connection: _Connection,
        reference: Reference,
        descriptor: Descriptor,
        *,
        handle: BinaryIO,
        counter: DigestCounter,
        subject: str,
        progress: Optional[Progress],
    ) -> bool:
        """One GET of the blob appended at ``counter.size``; True when the bytes were unencoded (resumable)."""
        import urllib3

        offset = counter.size
        if offset == descriptor.size and offset:
            return True
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        path = self._blob_path(reference, descriptor.digest)
        response = connection.request("GET", path, self._scope(reference), headers=headers)
        status = response.status_code
        if status in _RETRY_STATUSES:
            response.close()
            raise _Retry(f"HTTP {status}")
        if status == 416 and offset:
            response.close()
            self._truncate(handle, counter)
            raise _Retry("the registry refused to resume (HTTP 416)")
        if status == 206 and offset:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                response.close()
                self._truncate(handle, counter)
                raise _Retry(f"the registry resumed at the wrong offset ({content_range!r})")
        elif status == 200:
            if offset:
                self._truncate(handle, counter)
        else:
            raise connection.error(response, subject)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        identity = encoding in ("", "identity")
        handle.seek(counter.size)
        # read1 returns what has arrived, so a reset loses nothing already received (urllib3 >= 2; 1.26 lacks it).
        read = getattr(response.raw, "read1", None) or response.raw.read
        try:
            while True:
                chunk = read(CHUNK_SIZE if read is not response.raw.read else 256 * 1024, decode_content=not identity)
                if not chunk:
                    break
                if counter.size + len(chunk) > descriptor.size:
                    raise IntegrityError(
                        f"{subject} is longer than the {descriptor.size} bytes its descriptor announces"
                    )
                handle.write(chunk)
                counter.update(chunk)
                if progress is not None:
                    progress(counter.size)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            handle.flush()
            error = _Retry(f"connection lost after {counter.size} bytes: {_short(exc)}")
            error.resumable = identity  # type: ignore[attr-defined]
            raise error from None
        finally:
            response.close()
        if counter.size < descriptor.size:
            handle.flush()
            error = _Retry(f"the registry sent {counter.size} of {descriptor.size} bytes")
            error.resumable = identity  # type: ignore[attr-defined]
            raise error
        return identity

    # --- login -----------------------------------------------------------------------

    def check_login(self, reference: Reference) -> None:
        """Check this client's credentials with the registry of *reference*, as ``docker login`` does.

        ``GET /v2/`` must succeed: a Basic registry checks the credentials
        itself, a token registry's token server must issue a token for them
        (no scope asked).  The registry's own endpoint is used, never a mirror.
        """

        def at(connection: _Connection) -> None:
            response = connection.request("GET", "/v2/", "")
            try:
                if response.status_code != 200:
                    raise connection.error(response, f"the login to {connection.endpoint.host}")
            finally:
                response.close()

        self._on_endpoints(reference, at, push=True)

    # --- push ------------------------------------------------------------------------

    def tag_digest(self, reference: Reference) -> Optional[str]:
        """The digest the tag names now (the index itself for a multi-platform tag), None when it does not exist.

        Asked where a push goes (no mirrors), with a HEAD; a registry that
        sends no ``Docker-Content-Digest`` gets a GET, hashed here.
        """

        def at(connection: _Connection) -> Optional[str]:
            try:
                response = self._get_manifest(connection, reference, reference.identifier, "HEAD")[0]
            except NotFound:
                return None
            announced = response.headers.get("Docker-Content-Digest")
            if announced:
                try:
                    return validate_digest(announced, "Docker-Content-Digest")
                except InvalidArgument as exc:
                    raise ManifestError(f"registry {connection.endpoint.host}: {exc}") from None
            body = self._get_manifest(connection, reference, reference.identifier)[1]
            return sha256_bytes(body)

        return self._on_endpoints(reference, at, push=True)

    def blob_exists(self, reference: Reference, digest: str) -> bool:
        """Whether the repository of *reference* already has the blob (HEAD)."""
        path = self._blob_path(reference, digest)

        def at(connection: _Connection) -> bool:
            response = connection.request("HEAD", path, self._scope(reference, push=True))
            response.close()
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise connection.error(response, f"blob {digest} in {reference.name}")

        return self._on_endpoints(reference, at, push=True)

    def mount_blob(self, reference: Reference, digest: str, from_repository: str) -> bool:
        """Ask the registry to link a blob from another repository; False when it would not."""
        path = f"/v2/{reference.repository}/blobs/uploads/?" + urlencode(
            {"mount": validate_digest(digest, "blob digest"), "from": from_repository}
        )
        scope = f"{self._scope(reference, push=True)} repository:{from_repository}:pull"

        def at(connection: _Connection) -> bool:
            response = connection.request("POST", path, scope, headers={"Content-Length": "0"}, body=b"")
            if response.status_code == 201:
                response.close()
                return True
            if response.status_code == 202:
                response.close()
                location = response.headers.get("Location")
                if location:
                    with contextlib.suppress(BerthError):
                        connection.request("DELETE", urljoin(connection.url(path), location), scope).close()
                return False
            raise connection.error(response, f"mount of blob {digest} into {reference.name}")

        return self._on_endpoints(reference, at, push=True)

    def upload_blob(
        self,
        reference: Reference,
        digest: str,
        source_path: str,
        progress: Optional[Progress] = None,
        chunk_size: int = MONOLITHIC_UPLOAD_LIMIT,
    ) -> None:
        """Upload the file *source_path* as blob *digest*: one PUT, or PATCH chunks when larger than *chunk_size*."""
        validate_digest(digest, "blob digest")
        size = os.path.getsize(source_path)
        scope = self._scope(reference, push=True)
        subject = f"upload of blob {digest} to {reference.name}"

        def at(connection: _Connection) -> None:
            start_path = f"/v2/{reference.repository}/blobs/uploads/"
            response = connection.request("POST", start_path, scope, headers={"Content-Length": "0"}, body=b"")
            if response.status_code != 202 or not response.headers.get("Location"):
                raise connection.error(response, subject)
            response.close()
            location = urljoin(connection.url(start_path), response.headers["Location"])
            sent = 0
            if size > chunk_size:
                while sent < size:
                    length = min(chunk_size, size - sent)
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{sent}-{sent + length - 1}",
                        "Content-Length": str(length),
                    }
                    response = connection.request(
                        "PATCH", location, scope, headers=headers, body=self._file_slice(source_path, sent, length)
                    )
                    if response.status_code != 202 or not response.headers.get("Location"):
                        raise connection.error(response, subject)
                    response.close()
                    location = urljoin(location, response.headers["Location"])
                    sent += length
                    if progress is not None:
                        progress(sent)
                body: Any = b""
                headers = {"Content-Length": "0"}
            else:
                body = self._file_slice(source_path, 0, size)
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            separator = "&" if "?" in location else "?"
            response = connection.request(
                "PUT", f"{location}{separator}digest={digest}", scope, headers=headers, body=body
            )
            if response.status_code != 201:
                raise connection.error(response, subject)
            response.close()
            announced = response.headers.get("Docker-Content-Digest")
            if announced and announced != digest:
                raise IntegrityError(f"registry {connection.endpoint.host} stored {announced} for {subject}")
            if progress is not None:
                progress(size)

        self._on_endpoints(reference, at, push=True)

    @staticmethod
    def _file_slice(path: str, offset: int, length: int) -> Callable[[], "_FileSlice"]:
        """A body factory: called again when a request is re-sent after the auth handshake."""
        return lambda: _FileSlice(path, offset, length)

    def put_manifest(self, reference: Reference, body: bytes, media_type: str) -> str:
        """Store a manifest under the tag (or digest) of *reference*; return its digest."""
        digest = sha256_bytes(body)
        if reference.digest and reference.digest != digest:
            raise IntegrityError(f"the manifest to push hashes to {digest}, not {reference.digest}")
        path = f"/v2/{reference.repository}/manifests/{quote(reference.tag or digest, safe=':')}"

        def at(connection: _Connection) -> str:
            headers = {"Content-Type": media_type, "Content-Length": str(len(body))}
            response = connection.request("PUT", path, self._scope(reference, push=True), headers=headers, body=body)
            if response.status_code != 201:
                raise connection.error(response, f"manifest push of {reference.display}")
            response.close()
            announced = response.headers.get("Docker-Content-Digest")
            if announced and announced != digest:
                raise IntegrityError(
                    f"registry {connection.endpoint.host} stored {announced} for a manifest hashing to {digest}"
                )
            return digest

        return self._on_endpoints(reference, at, push=True)


class _FileSlice:
    """*length* bytes of a file from *offset*, as a request body with a known length (no chunked encoding)."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        self.path = path
        self.offset = offset
        self.remaining = length
        self.length = length
        self._handle: Optional[BinaryIO] = None

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        if self._handle is None:
            self._handle = open(self.path, "rb")  # noqa: SIM115 - closed when the slice is exhausted
            self._handle.seek(self.offset)
        if self.remaining <= 0:
            self._handle.close()
            return b""
        want = self.remaining if size is None or size < 0 else min(size, self.remaining)
        chunk = self._handle.read(want)
        if not chunk:
            self._handle.close()
            raise IntegrityError(f"{self.path} became shorter while it was being uploaded")
        self.remaining -= len(chunk)
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while True:
            chunk = self.read(CHUNK_SIZE)
            if not chunk:
                return
            yield chunk


def _short(exc: BaseException) -> str:
    """A one-line reason from a requests/urllib3 exception (they nest and repeat themselves)."""
    text = str(exc)
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip("()'\" ")[:200]
