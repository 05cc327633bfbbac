"""Holding published host ports for a container's lifetime; the userland proxy.

The container's supervisor calls :func:`hold_published_ports` with the
attachment that ``network.connect`` returned and keeps the result open until
the container exits:

* with kernel NAT (``forwarding: nat``) it binds each host port without
  listening, so nothing else can take the port while the container runs and
  a conflicting ``connect`` fails fast (conmon does the same); the DNAT rules
  move the packets, the sockets never see them;
* without netfilter (``forwarding: proxy``: ``firewall-backend: none``,
  ``userland-proxy: true``, or no nft/iptables on the host) it runs a
  :class:`PortProxy`: one event thread accepts TCP connections and relays UDP
  datagrams; each TCP connection is relayed by a pair of blocking pumps.
"""

import contextlib
import errno
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, cast

from .errors import NetworkError
from .ports import ANY_ADDRESS, PublishedPort, port_taken_error

_BUFFER = 65536
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Forward:
    """host_ip:host_port/protocol -> target_ip:target_port."""

    protocol: str
    host_ip: str
    host_port: int
    target_ip: str
    target_port: int


def forwards_of(attachment: Mapping[str, Any]) -> List[Forward]:
    ports = [PublishedPort.from_dict(item) for item in attachment.get("ports", [])]
    target = str(attachment.get("ip") or "")
    if ports and not target:
        raise NetworkError("the attachment has published ports but no container address")
    return [Forward(port.protocol, port.host_ip, port.host_port, target, port.container_port) for port in ports]


def _bind(forward: Forward, listen: bool) -> socket.socket:
    kind = socket.SOCK_STREAM if forward.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if listen and forward.protocol == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((forward.host_ip or ANY_ADDRESS, forward.host_port))
        if listen and forward.protocol == "tcp":
            sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise port_taken_error(forward.host_ip, forward.host_port, forward.protocol) from None
        raise NetworkError(f"cannot bind host port {forward.host_port}/{forward.protocol}: {exc.strerror}") from None
    return sock


class PortReservation:
    """Host ports bound but not listening: they keep other programs off the ports NAT forwards."""

    def __init__(self, forwards: Sequence[Forward]) -> None:
        self.forwards = list(forwards)
        self.sockets: List[socket.socket] = []

    def start(self) -> "PortReservation":
        try:
            for forward in self.forwards:
                self.sockets.append(_bind(forward, listen=False))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def __enter__(self) -> "PortReservation":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class PortProxy:
    """A userland TCP/UDP forwarder from host ports to a container address."""

    def __init__(self, forwards: Sequence[Forward], udp_idle_timeout: float = 60.0) -> None:
        self.forwards = list(forwards)
        self.udp_idle_timeout = udp_idle_timeout
        self._selector = selectors.DefaultSelector()
        self._listeners: List[socket.socket] = []
        self._udp_flows: Dict[Tuple[int, Tuple[str, int]], Tuple[socket.socket, List[float]]] = {}
        self._relayed: Set[socket.socket] = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: Optional[threading.Thread] = None
        self._closing = False

    def start(self) -> "PortProxy":
        """Bind every host port (all or none), then serve them from a daemon thread."""
        try:
            for forward in self.forwards:
                sock = _bind(forward, listen=True)
                sock.setblocking(False)
                self._listeners.append(sock)
                self._selector.register(sock, selectors.EVENT_READ, ("listener", forward))
        except BaseException:
            self._close_sockets()
            raise
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread = threading.Thread(target=self._loop, name="berth-portproxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            relayed = list(self._relayed)
        for sock in relayed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._close_sockets()

    def __enter__(self) -> "PortProxy":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _close_sockets(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners = []
        for upstream, _last_used in self._udp_flows.values():
            upstream.close()
        self._udp_flows = {}
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _loop(self) -> None:
        while not self._closing:
            for key, _events in self._selector.select(timeout=min(5.0, self.udp_idle_timeout)):
                role, detail = key.data
                sock = cast(socket.socket, key.fileobj)
                if role == "listener" and detail.protocol == "tcp":
                    self._accept(sock, detail)
                elif role == "listener":
                    self._udp_from_client(sock, detail)
                elif role == "udp-reply":
                    self._udp_from_container(sock, *detail)
            self._expire_udp_flows()

    def _accept(self, listener: socket.socket, forward: Forward) -> None:
        try:
            client, _peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        client.setblocking(True)
        threading.Thread(
            target=self._relay_tcp, args=(client, forward), name="berth-portproxy-tcp", daemon=True
        ).start()

    def _relay_tcp(self, client: socket.socket, forward: Forward) -> None:
        try:
            upstream = socket.create_connection((forward.target_ip, forward.target_port), timeout=_CONNECT_TIMEOUT)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._relayed.update((client, upstream))
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            self._relayed.difference_update((client, upstream))
        client.close()
        upstream.close()

    def _udp_from_client(self, listener: socket.socket, forward: Forward) -> None:
        try:
            data, client = listener.recvfrom(_BUFFER)
        except OSError:
            return
        key = (listener.fileno(), client)
        flow = self._udp_flows.get(key)
        if flow is None:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.setblocking(False)
            try:
                upstream.connect((forward.target_ip, forward.target_port))
            except OSError:
                upstream.close()
                return
            flow = (upstream, [time.monotonic()])
            self._udp_flows[key] = flow
            self._selector.register(upstream, selectors.EVENT_READ, ("udp-reply", (listener, client)))
        flow[1][0] = time.monotonic()
        with contextlib.suppress(OSError):
            flow[0].send(data)

    def _udp_from_container(self, upstream: socket.socket, listener: socket.socket, client: Tuple[str, int]) -> None:
        try:
            data = upstream.recv(_BUFFER)
        except OSError:
            return
        flow = self._udp_flows.get((listener.fileno(), client))
        if flow is not None:
            flow[1][0] = time.monotonic()
        with contextlib.suppress(OSError):
            listener.sendto(data, client)

    def _expire_udp_flows(self) -> None:
        deadline = time.monotonic() - self.udp_idle_timeout
        for key, (upstream, last) in list(self._udp_flows.items()):
            if last[0] < deadline:
                self._selector.unregister(upstream)
                upstream.close()
                del self._udp_flows[key]


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction of a TCP connection until EOF, then pass the EOF on."""
    try:
        while True:
            data = source.recv(_BUFFER)
            if not data:
                break
            sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def hold_published_ports(attachment: Mapping[str, Any]) -> Any:
    """What the supervisor keeps open for the container's life: a started PortProxy or PortReservation.

    Call ``.close()`` (or use it as a context manager) when the container exits.
    """
    forwards = forwards_of(attachment)
    if attachment.get("forwarding") == "proxy":
        return PortProxy(forwards).start()
    return PortReservation(forwards).start()
