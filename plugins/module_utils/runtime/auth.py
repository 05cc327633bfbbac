"""Registry credentials and the authentication handshake.

Credentials come from the caller (module options, CLI flags) or from a
Docker ``config.json`` / Podman ``auth.json`` file.  What to do with them is
decided by the registry: its ``WWW-Authenticate`` challenge asks either for
HTTP Basic or for a bearer token from a token server (Docker Hub's flow,
distribution's ``token.md``).  Tokens are cached per scope until they
expire; ``insufficient_scope`` fetches a new one (RUNTIME-REFERENCE §1.4).

Secrets never appear in ``repr()``, logs or exception messages.
"""

import base64
import binascii
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlencode, urlsplit

from . import fsutil
from .errors import AuthenticationError, ConfigError, RegistryError

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
# distribution token.md: "expires_in ... defaults to 60 seconds"; Docker never goes below that either.
DEFAULT_TOKEN_LIFETIME = 60
MAX_TOKEN_RESPONSE = 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    """A username and password (or token used as one)."""

    username: str
    password: str = field(repr=False)

    def basic_authorization(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# --- auth files ------------------------------------------------------------


def default_auth_file() -> str:
    """Where ``berth login`` writes: Docker's ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def auth_file_candidates() -> List[str]:
    """Files searched for credentials, in order (Docker's first, then Podman's)."""
    candidates = [default_auth_file()]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        candidates.append(os.path.join(runtime_dir, "containers", "auth.json"))
    candidates.append(os.path.join(os.path.expanduser("~"), ".config", "containers", "auth.json"))
    return candidates


def normalize_auth_key(key: str) -> str:
    """An ``auths`` key as ``host[/namespace...]`` (``https://index.docker.io/v1/`` -> ``docker.io``).

    URL-style keys (Docker) name a host; bare keys (Podman) may add a
    namespace or repository.
    """
    text = key.strip()
    had_scheme = False
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text, had_scheme = text[len(scheme) :], True
    if had_scheme:
        text = text.split("/", 1)[0]
    host, _slash, rest = text.rstrip("/").partition("/")
    host = host.lower()
    if host in _DOCKER_HUB_HOSTS:
        host = "docker.io"
    return f"{host}/{rest}" if rest else host


def lookup_keys(domain: str, repository: str = "") -> List[str]:
    """Normalised keys that may hold credentials for *repository* on *domain*, most specific first."""
    host = normalize_auth_key(domain)
    parts = [part for part in repository.split("/") if part]
    return [f"{host}/{'/'.join(parts[:length])}" for length in range(len(parts), 0, -1)] + [host]


def _read_auth_file(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the registry auth file {path}: {exc.strerror}") from None
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"registry auth file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"registry auth file {path} must hold a JSON object")
    auths = data.get("auths", {})
    if not isinstance(auths, dict):
        raise ConfigError(f"registry auth file {path}: 'auths' must be an object")
    return data


def _entry_credentials(entry: Any, path: str, key: str) -> Optional[Credentials]:
    if not isinstance(entry, dict):
        raise ConfigError(f"registry auth file {path}: the entry {key!r} must be an object")
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"registry auth file {path}: the 'auth' of {key!r} is not base64 of user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise ConfigError(f"registry auth file {path}: the 'auth' of {key!r} is not base64 of user:password")
        return Credentials(username, password)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and username and isinstance(password, str):
        return Credentials(username, password)
    return None


def load_credentials(domain: str, repository: str = "", auth_file: Optional[str] = None) -> Optional[Credentials]:
    """Credentials stored for *repository* on *domain*, or None.

    With *auth_file* only that file is read (it must exist); otherwise the
    :func:`auth_file_candidates` are searched and the first match wins.
    Within a file the most specific key wins (``host/ns/repo`` before
    ``host/ns`` before ``host``).
    """
    if auth_file is not None and not os.path.exists(auth_file):
        raise ConfigError(f"registry auth file {auth_file} does not exist")
    wanted = lookup_keys(domain, repository)
    for path in [auth_file] if auth_file else auth_file_candidates():
        data = _read_auth_file(path)
        if not data:
            continue
        by_key: Dict[str, Tuple[str, Any]] = {}
        for key, entry in data.get("auths", {}).items():
            by_key.setdefault(normalize_auth_key(key), (key, entry))
        for candidate in wanted:
            if candidate in by_key:
                key, entry = by_key[candidate]
                credentials = _entry_credentials(entry, path, key)
                if credentials is not None:
                    return credentials
    return None


def save_credentials(domain: str, credentials: Credentials, auth_file: Optional[str] = None) -> str:
    """Store credentials for *domain* the way ``docker login`` does; return the file written."""
    path = auth_file or default_auth_file()
    data = _read_auth_file(path) or {}
    auths = data.setdefault("auths", {})
    host = normalize_auth_key(domain)
    for key in [key for key in auths if normalize_auth_key(key) == host]:
        del auths[key]
    key = DOCKER_HUB_AUTH_KEY if host == "docker.io" else host
    raw = f"{credentials.username}:{credentials.password}".encode()
    auths[key] = {"auth": base64.b64encode(raw).decode("ascii")}
    fsutil.makedirs(os.path.dirname(path) or ".", 0o700)
    fsutil.write_json_atomic(path, data, 0o600)
    return path


def remove_credentials(domain: str, auth_file: Optional[str] = None) -> bool:
    """Forget the credentials of *domain* (``berth logout``); True if there were any."""
    path = auth_file or default_auth_file()
    data = _read_auth_file(path)
    if not data:
        return False
    host = normalize_auth_key(domain)
    keys = [key for key in data.get("auths", {}) if normalize_auth_key(key) == host]
    for key in keys:
        del data["auths"][key]
    if keys:
        fsutil.write_json_atomic(path, data, 0o600)
    return bool(keys)


# --- challenges ------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: scheme (lowercase) and parameters."""

    scheme: str
    params: Dict[str, str]


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _skip_space(text: str, pos: int, commas: bool = False) -> int:
    stop = " \t," if commas else " \t"
    while pos < len(text) and text[pos] in stop:
        pos += 1
    return pos


def parse_challenges(header: str) -> List[Challenge]:
    """Parse ``WWW-Authenticate`` (RFC 7235 §4.1, RFC 6750 §3): several challenges, quoted strings, commas.

    A ``token68`` credential (``Negotiate abc==``) is kept under the key ``""``.
    Unparseable characters are skipped rather than failing the whole header.
    """
    text = header or ""
    challenges: List[Challenge] = []
    pos = 0
    while pos < len(text):
        pos = _skip_space(text, pos, commas=True)
        scheme = _TOKEN.match(text, pos)
        if not scheme:
            pos += 1
            continue
        params: Dict[str, str] = {}
        pos = scheme.end()
        after = _skip_space(text, pos)
        token68 = _TOKEN68.match(text, after) if after > pos else None
        if token68 and _skip_space(text, token68.end()) in (len(text), text.find(",", token68.end())):
            params[""] = token68.group()
            pos = token68.end()
        else:
            while True:
                start = _skip_space(text, pos, commas=True)
                name = _TOKEN.match(text, start)
                equals = _skip_space(text, name.end()) if name else start
                if not name or equals >= len(text) or text[equals] != "=":
                    pos = start
                    break
                value, pos = _param_value(text, _skip_space(text, equals + 1))
                params[name.group().lower()] = value
        challenges.append(Challenge(scheme.group().lower(), params))
    return challenges


def _param_value(text: str, pos: int) -> Tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        value = []
        pos += 1
        while pos < len(text) and text[pos] != '"':
            if text[pos] == "\\" and pos + 1 < len(text):
                pos += 1
            value.append(text[pos])
            pos += 1
        return "".join(value), pos + 1
    match = _TOKEN.match(text, pos)
    return (match.group(), match.end()) if match else ("", pos)


# --- the handshake ---------------------------------------------------------

# (status, body) of a token request; the registry client provides it so the
# token server is reached with the same TLS settings, proxies and limits.
TokenFetcher = Callable[[str, Dict[str, str]], Tuple[int, bytes]]


class RegistryAuth:
    """Authorization for one registry endpoint, shared by the threads that use it.

    ``header(scope)`` gives what to send up front (a cached token or Basic
    once the registry asked for it); ``unauthorized(...)`` reacts to a 401 and
    returns the header to retry with, or raises :class:`AuthenticationError`.
    """

    def __init__(self, registry: str, credentials: Optional[Credentials], clock: Callable[[], float] = time.monotonic):
        self.registry = registry
        self.credentials = credentials
        self._clock = clock
        self._lock = threading.Lock()
        self._challenge: Optional[Challenge] = None
        self._tokens: Dict[Tuple[str, str, Tuple[str, ...]], Tuple[str, float]] = {}
        self.token_requests = 0

    def header(self, scope: str) -> Optional[str]:
        with self._lock:
            challenge = self._challenge
            if challenge is None:
                return None
            if challenge.scheme == "basic":
                return self.credentials.basic_authorization() if self.credentials else None
            cached = self._tokens.get(self._token_key(challenge, self._scopes(challenge, scope)))
            if cached and cached[1] > self._clock():
                return "Bearer " + cached[0]
            return None

    def unauthorized(
        self, www_authenticate: str, scope: str, sent: Optional[str], first: bool, fetch_token: TokenFetcher
    ) -> str:
        """The Authorization header to retry a request that got 401 after sending *sent*.

        *first* is True when *sent* came from :meth:`header` (nothing, or a
        cached token that may have expired) and False when it came from an
        earlier call of this method for the same request (a fresh answer the
        registry still refused).
        """
        challenges = parse_challenges(www_authenticate)
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.params.get("realm")), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            scopes = self._scopes(bearer, scope)
            asked_more = bearer.params.get("error") == "insufficient_scope" and len(scopes) > len(
                self._scopes(None, scope)
            )
            if not first and not asked_more:
                raise self._denied(scope)
            key = self._token_key(bearer, scopes)
            with self._lock:
                self._challenge = bearer
                self._tokens.pop(key, None)
            token, lifetime = self._fetch(bearer, scopes, fetch_token)
            with self._lock:
                self._tokens[key] = (token, self._clock() + lifetime)
            return "Bearer " + token
        if basic is not None:
            with self._lock:
                self._challenge = basic
            if self.credentials is None:
                raise self.needs_credentials()
            if sent is not None and sent.startswith("Basic "):
                raise self.refused()
            return self.credentials.basic_authorization()
        raise AuthenticationError(
            f"registry {self.registry} asked for authentication without a usable challenge"
            f" (WWW-Authenticate: {www_authenticate[:200]!r})",
            status=401,
            code="UNAUTHORIZED",
        )

    def needs_credentials(self) -> AuthenticationError:
        return AuthenticationError(
            f"registry {self.registry} requires authentication: give username/password or run `berth login`",
            status=401,
            code="UNAUTHORIZED",
        )

    def refused(self) -> AuthenticationError:
        username = self.credentials.username if self.credentials is not None else "(none)"
        return AuthenticationError(
            f"registry {self.registry} refused the credentials for user {username}",
            status=401,
            code="UNAUTHORIZED",
        )

    def _denied(self, scope: str) -> AuthenticationError:
        if self.credentials is None:
            repository = scope.split(":")[1] if scope.count(":") >= 2 else scope
            return AuthenticationError(
                f"registry {self.registry} requires authentication: give username/password or run `berth login`"
                f" (or check the name: registries also answer so when repository {repository} does not exist)",
                status=401,
                code="UNAUTHORIZED",
            )
        return AuthenticationError(
            f"registry {self.registry} denied user {self.credentials.username} the access {scope!r} needs;"
            " check the repository name and the user's permissions",
            status=401,
            code="DENIED",
        )

    @staticmethod
    def _scopes(challenge: Optional[Challenge], scope: str) -> Tuple[str, ...]:
        scopes = [part for part in scope.split(" ") if part]
        extras = challenge.params.get("scope", "") if challenge is not None else ""
        for extra in extras.split(" "):
            if extra and extra not in scopes:
                scopes.append(extra)
        return tuple(scopes)

    @staticmethod
    def _token_key(challenge: Challenge, scopes: Tuple[str, ...]) -> Tuple[str, str, Tuple[str, ...]]:
        return (challenge.params.get("realm", ""), challenge.params.get("service", ""), tuple(sorted(scopes)))

    def _fetch(self, challenge: Challenge, scopes: Tuple[str, ...], fetch_token: TokenFetcher) -> Tuple[str, float]:
        realm = challenge.params["realm"]
        if urlsplit(realm).scheme not in ("http", "https"):
            raise AuthenticationError(f"registry {self.registry} named an invalid token server {realm!r}")
        query = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        query += [("scope", scope) for scope in scopes]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_authorization()
        with self._lock:
            self.token_requests += 1
        status, body = fetch_token(url, headers)
        if status in (401, 403):
            raise self.refused() if self.credentials is not None else self.needs_credentials()
        if status != 200:
            raise RegistryError(
                f"the token server {urlsplit(realm).netloc} of registry {self.registry} answered HTTP {status}",
                status=status,
            )
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        token = None
        if isinstance(document, dict):
            token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"the token server {urlsplit(realm).netloc} of registry {self.registry} sent no token")
        expires_in = document.get("expires_in") if isinstance(document, dict) else None
        lifetime = expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool) else 0
        lifetime = max(lifetime, DEFAULT_TOKEN_LIFETIME)
        # Renew a little early so a token does not expire between the check and the request.
        return token, lifetime - min(10.0, lifetime * 0.1)
