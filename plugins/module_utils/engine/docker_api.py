"""A tiny client for the Docker Engine API on its unix socket.

Standard library only (``http.client`` over ``AF_UNIX``), so that asking a
freshly installed daemon what it runs with needs nothing on the host but
Python.  Only unversioned ``GET`` requests are made (``/_ping``,
``/version``, ``/info``): the daemon answers them with its newest API.
"""

import errno
import http.client
import json
import socket
import time
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from ..runtime.errors import BerthError, InvalidArgument

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class DaemonUnavailable(BerthError):
    """No Docker daemon answers on the socket."""


class DaemonError(BerthError):
    """The daemon answered, but with an error."""


def socket_path(docker_host: str) -> str:
    """The filesystem path of a ``unix://`` Docker host (a bare absolute path is accepted too)."""
    if docker_host.startswith("/"):
        return docker_host
    parts = urlsplit(docker_host)
    if parts.scheme != "unix":
        raise InvalidArgument(
            f"docker_host {docker_host!r} is not supported: give the daemon's unix socket, like {DEFAULT_DOCKER_HOST}"
        )
    path = (parts.netloc + parts.path) if parts.netloc else parts.path
    if not path.startswith("/"):
        raise InvalidArgument(f"docker_host {docker_host!r} must name an absolute socket path")
    return path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DockerSocketClient:
    """GET JSON from the daemon; every failure becomes a message that names the socket."""

    def __init__(self, docker_host: str = DEFAULT_DOCKER_HOST, timeout: float = 30.0) -> None:
        self.docker_host = docker_host
        self.path = socket_path(docker_host)
        self.timeout = timeout

    def _down(self, reason: str) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"no Docker daemon answers on {self.docker_host} ({reason}): is the docker service running? "
            "(systemctl status docker; journalctl -u docker)"
        )

    def request(self, path: str) -> bytes:
        """GET *path* and return the body of a 200 answer."""
        connection = _UnixConnection(self.path, self.timeout)
        try:
            try:
                connection.request("GET", path, headers={"Host": "docker", "Accept": "application/json"})
                response = connection.getresponse()
                body = response.read(MAX_RESPONSE_BYTES + 1)
            except FileNotFoundError:
                raise self._down("the socket does not exist") from None
            except ConnectionRefusedError:
                raise self._down("connection refused") from None
            except PermissionError:
                raise DaemonUnavailable(
                    f"permission denied on {self.docker_host}: run as root or as a member of the docker group"
                ) from None
            except socket.timeout:
                raise self._down(f"no answer within {self.timeout:g}s") from None
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOTSOCK:
                    raise self._down("the path is not a socket") from None
                raise self._down(str(exc) or type(exc).__name__) from None
        finally:
            connection.close()
        if len(body) > MAX_RESPONSE_BYTES:
            raise DaemonError(f"the answer to GET {path} from {self.docker_host} is larger than 16 MiB")
        if response.status != 200:
            raise DaemonError(
                f"the daemon on {self.docker_host} answered GET {path} with HTTP {response.status}: "
                f"{_error_message(body)}"
            )
        return body

    def get_json(self, path: str) -> Any:
        body = self.request(path)
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise DaemonError(f"the answer to GET {path} from {self.docker_host} is not JSON") from None

    def ping(self) -> str:
        return self.request("/_ping").decode("utf-8", "replace").strip()


def _error_message(body: bytes) -> str:
    try:
        message = json.loads(body.decode("utf-8")).get("message")
    except (ValueError, AttributeError):
        message = None
    return message or body.decode("utf-8", "replace").strip()[:300] or "(empty answer)"


def wait_for_daemon(
    client: DockerSocketClient,
    wait_timeout: float,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Ping until the daemon answers or *wait_timeout* seconds have passed; return the seconds waited.

    A daemon that was just (re)started first has no socket, then refuses
    connections, then answers; all of these are waited out.  Errors that
    waiting cannot fix (permission denied, a non-socket path) are raised at once.
    """
    start = clock()
    last: Optional[DaemonUnavailable] = None
    while True:
        try:
            client.ping()
            return clock() - start
        except DaemonUnavailable as exc:
            if "permission denied" in str(exc) or "not a socket" in str(exc):
                raise
            last = exc
        except DaemonError as exc:
            last = DaemonUnavailable(str(exc))
        elapsed = clock() - start
        if elapsed >= wait_timeout:
            break
        sleep(min(interval, max(wait_timeout - elapsed, 0.0)))
    if wait_timeout > 0:
        raise DaemonUnavailable(f"{last} (waited {wait_timeout:g}s)")
    raise last
