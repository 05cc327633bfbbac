"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8).

``Registry`` starts ``docker-registry serve CONFIG`` as a child process on a
free loopback port, in its own session, remembers the pid, and stops that
pid only.  Variants:

============  =====  ==========================================
variant       TLS    authentication
============  =====  ==========================================
plain         no     none
auth          no     htpasswd (bcrypt entries, ``htpasswd -Bbn``)
tls           yes    none
tls-auth      yes    htpasswd
token         no     bearer tokens from a ``TokenServer``
tls-token     yes    bearer tokens from a ``TokenServer``
============  =====  ==========================================

Deleting manifests and blobs is enabled.  ``stop()`` followed by ``start()``
brings the same instance (same port, same storage) back, which is how tests
simulate a registry that is down.  ``mirror_of`` turns the instance into a
pull-through cache of another registry (distribution's ``proxy`` mode), the
same thing a Docker Hub mirror is.

Works outside pytest too::

    with Registry("tls-auth") as reg:
        print(reg.url, reg.username, reg.password, reg.ca_file)
"""

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import procs
from .pki import CertificateAuthority

if TYPE_CHECKING:
    from .pusher import RegistryClient
    from .tokenserver import TokenServer

VARIANTS: Dict[str, Tuple[bool, Optional[str]]] = {
    "plain": (False, None),
    "auth": (False, "basic"),
    "tls": (True, None),
    "tls-auth": (True, "basic"),
    "token": (False, "token"),
    "tls-token": (True, "token"),
}
BINARY = "docker-registry"
START_TIMEOUT = 15.0
STATE_FILE = "instance.json"


class RegistryError(RuntimeError):
    """The registry could not be started or stopped; the message carries its log."""


class Registry:
    """One ``docker-registry`` process and its state directory."""

    def __init__(
        self,
        variant: str = "plain",
        *,
        state_dir: Optional[str] = None,
        port: Optional[int] = None,
        username: str = "berth",
        password: Optional[str] = None,
        token_server: "Optional[TokenServer]" = None,
        mirror_of: "Optional[Registry]" = None,
        die_with_parent: bool = True,
        ca: Optional[CertificateAuthority] = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown registry variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.tls, self.auth = VARIANTS[variant]
        if self.auth == "token" and token_server is None:
            raise ValueError(f"registry variant {variant!r} needs a token_server")
        self.token_server = token_server
        if mirror_of is not None and mirror_of.auth == "basic":
            raise ValueError(
                "distribution 2.8's proxy cannot log in to a Basic-auth upstream (it only answers token "
                "challenges): mirror a plain, tls or token registry"
            )
        self.mirror_of = mirror_of
        self.die_with_parent = die_with_parent
        self._owns_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix=f"berth-registry-{variant}-", dir="/var/tmp")
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.storage_dir = os.path.join(self.state_dir, "storage")
        self.config_path = os.path.join(self.state_dir, "config.yml")
        self.log_path = os.path.join(self.state_dir, "registry.log")
        self.username = username if self.auth == "basic" else None
        self.password = (password or secrets.token_hex(8)) if self.auth == "basic" else None
        self._fixed_port = port
        self.port: Optional[int] = port
        self.pid: Optional[int] = None
        self._popen: Optional[subprocess.Popen] = None
        self.ca: Optional[CertificateAuthority] = None
        self.start_seconds: Optional[float] = None
        if self.tls:
            self.ca = ca or CertificateAuthority(os.path.join(self.state_dir, "pki"))
            self._server_cert = self.ca.issue_server(f"registry-{secrets.token_hex(3)}")

    # -- addresses and credentials -------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of an image reference."""
        if self.port is None:
            raise RegistryError("the registry has no port yet: call start() first")
        return f"{procs.LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``https://127.0.0.1:40123``."""
        return f"{self.scheme}://{self.host}"

    @property
    def credentials(self) -> Optional[Tuple[str, str]]:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    @property
    def ca_file(self) -> Optional[str]:
        return self.ca.cert if self.ca else None

    @property
    def ca_dir(self) -> Optional[str]:
        """A directory holding only the CA certificate (for ``skopeo --cert-dir``)."""
        return self.ca.ca_dir if self.ca else None

    @property
    def verify(self) -> Any:
        """What to pass as ``verify=`` to requests (per request: the environment wins over a Session's)."""
        return self.ca_file if self.tls else True

    def client(self, username: Optional[str] = None, password: Optional[str] = None) -> "RegistryClient":
        """A ``RegistryClient`` for this registry with its own credentials (or the given ones)."""
        from .pusher import RegistryClient

        if username is None and self.auth == "token" and self.token_server is not None:
            username, password = self.token_server.username, self.token_server.password
        elif username is None and self.credentials:
            username, password = self.credentials
        return RegistryClient(self.url, username=username, password=password, verify=self.verify)

    def reference(self, repository: str, tag: str = "latest") -> str:
        """An image reference on this registry: ``127.0.0.1:PORT/REPO:TAG`` (or ``@sha256:...``)."""
        separator = "@" if tag.startswith("sha256:") else ":"
        return f"{self.host}/{repository}{separator}{tag}"

    # -- life cycle -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.pid is not None and procs.is_running(self.pid, self._is_ours)

    def start(self) -> "Registry":
        """Start (or restart after ``stop()``) and wait until ``/v2/`` answers 200 or 401."""
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 5
        for attempt in range(attempts):
            if self.port is None or (attempt and not self._fixed_port):
                self.port = procs.free_port()
            self._write_config()
            began = time.monotonic()
            offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            self._popen = procs.start_detached(
                [BINARY, "serve", self.config_path],
                self.log_path,
                die_with_parent=self.die_with_parent,
                cwd=self.state_dir,
                env=self._child_env(),
            )
            self.pid = self._popen.pid
            if self._wait_ready(offset):
                self.start_seconds = time.monotonic() - began
                self._save_state()
                return self
            log = self._log_since(offset)
            self.stop()
            if "address already in use" not in log or self._fixed_port:
                raise RegistryError(f"docker-registry ({self.variant}) did not start on port {self.port}:\n{log}")
        raise RegistryError(f"docker-registry ({self.variant}) found no free port after {attempts} attempts")

    def stop(self) -> None:
        """Stop the process this instance started (by pid); storage and port are kept for ``start()``."""
        if self.pid is not None:
            procs.stop_pid(self.pid, self._is_ours, popen=self._popen)
        self.pid = None
        self._popen = None
        self._save_state()

    def restart(self) -> "Registry":
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, and remove the state directory when this instance made it."""
        self.stop()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "Registry":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.variant!r}, url={self.url if self.port else None!r}, pid={self.pid})"

    @classmethod
    def from_state(cls, state_dir: str) -> "Optional[Registry]":
        """Re-attach to a registry started by another process (e.g. ``scripts/demo-registry``)."""
        path = os.path.join(state_dir, STATE_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
        except FileNotFoundError:
            return None
        if saved["variant"] not in ("plain", "auth"):
            raise RegistryError(f"{path}: only plain and auth registries can be re-attached")
        reg = cls(
            saved["variant"],
            state_dir=state_dir,
            port=saved["port"],
            username=saved.get("username") or "berth",
            password=saved.get("password"),
            die_with_parent=False,
        )
        reg.pid = saved.get("pid")
        return reg

    # -- internals ------------------------------------------------------------------
    def _is_ours(self, argv: List[str]) -> bool:
        return len(argv) >= 3 and os.path.basename(argv[0]) == BINARY and argv[-1] == self.config_path

    def _child_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        if self.mirror_of is not None and self.mirror_of.ca_file:
            env["SSL_CERT_FILE"] = self.mirror_of.ca_file  # Go's TLS must trust the upstream's CA
        return env

    def _wait_ready(self, log_offset: int) -> bool:
        import requests

        session = requests.Session()
        session.trust_env = False
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._popen is not None and self._popen.poll() is not None:
                    return False
                try:
                    status = session.get(f"{self.url}/v2/", verify=self.verify, timeout=2).status_code
                except requests.ConnectionError:
                    time.sleep(0.01)
                    continue
                if status in (200, 401):
                    return True
                raise RegistryError(f"{self.url}/v2/ answered {status}:\n{self._log_since(log_offset)}")
        finally:
            session.close()
        return False

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log)"

    def _save_state(self) -> None:
        state = {
            "variant": self.variant,
            "port": self.port,
            "pid": self.pid,
            "username": self.username,
            "password": self.password,
            "url": self.url if self.port else None,
        }
        tmp = os.path.join(self.state_dir, f".{STATE_FILE}.tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2)
        os.replace(tmp, os.path.join(self.state_dir, STATE_FILE))

    def _write_config(self) -> None:
        """Write config.yml (JSON is YAML, so no YAML library is needed)."""
        os.makedirs(self.storage_dir, exist_ok=True)
        http: Dict[str, Any] = {
            "addr": self.host,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            http["tls"] = {"certificate": self._server_cert.cert, "key": self._server_cert.key}
        config: Dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": self.storage_dir},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.auth == "basic":
            config["auth"] = {"htpasswd": {"realm": "berth-test-registry", "path": self._write_htpasswd()}}
        elif self.auth == "token" and self.token_server is not None:
            config["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.token_server.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": self.token_server.rootcertbundle,
                }
            }
        if self.mirror_of is not None:
            proxy: Dict[str, Any] = {"remoteurl": self.mirror_of.url}
            upstream = self.mirror_of.token_server
            if upstream is not None:
                proxy["username"], proxy["password"] = upstream.username, upstream.password
            config["proxy"] = proxy
        with open(self.config_path, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2)

    def _write_htpasswd(self) -> str:
        path = os.path.join(self.state_dir, "htpasswd")
        if self.username is None or self.password is None:
            raise RegistryError("an htpasswd file needs a username and a password")
        result = subprocess.run(
            ["htpasswd", "-Bbn", self.username, self.password], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RegistryError(f"htpasswd failed (install apache2-utils): {result.stderr.strip()}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(result.stdout.strip() + "\n")
        return path
