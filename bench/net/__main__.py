"""Network benchmark: container network set-up cost, latency through published ports, and the walkthrough's run.

``sudo .venv/bin/python -m bench.net [--requests N] [--only ports|run] [--rounds N] [--no-docker]``

First (``run``, see walkthrough.py): ``run -d -p PORT:80 nginx`` to the first
HTTP 200, berth vs docker in the same run (dockerd in a private network
namespace, so its iptables changes never reach the host).  Target: at most
0.5 x docker.

Then (``ports``), for each port-forwarding path (nftables DNAT, iptables DNAT, the userland proxy):

* set-up and tear-down cost of one container's network (median of 20,
  containers created one after the other, as ``berth run`` would);
* per-connection latency (connect, read a greeting, close) to 127.0.0.1:HOST
  vs directly to the container address;
* per-request latency (64-byte echo on one connection) and bulk echo
  throughput, published vs direct.

Each backend gets its own lab bridge (see tests/support/netlab.py); traffic
stays on loopback and the lab's namespaces.  Target: published-port latency at
most 1.1 x direct.
"""

import argparse
import shutil
import socket
import statistics
import tempfile
import time
from typing import Dict, List, Tuple

from support.netlab import Lab

from ansible_collections.berth.containers.plugins.module_utils.runtime import network, portproxy

ECHO_PORT = 9000
GREETING_PORT = 8080


def _median_us(samples: List[float]) -> float:
    return statistics.median(samples) * 1e6


def _p90_us(samples: List[float]) -> float:
    return sorted(samples)[int(len(samples) * 0.9)] * 1e6


def one_connection(host: str, port: int) -> float:
    """Seconds to connect, read the greeting to the end and close."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=5) as sock:
        while sock.recv(4096):
            pass
    return time.perf_counter() - started


def connection_latency(targets: Dict[str, Tuple[str, int]], count: int) -> Dict[str, List[float]]:
    """Per-connection latency of each target, the targets taking turns so the machine's noise falls on all alike."""
    samples: Dict[str, List[float]] = {label: [] for label in targets}
    for _round in range(count):
        for label, (host, port) in targets.items():
            samples[label].append(one_connection(host, port))
    return samples


def request_latency(targets: Dict[str, Tuple[str, int]], count: int, warm_up: int = 50) -> Dict[str, List[float]]:
    """Round trips of 64 bytes on one open connection per target, the targets taking turns."""
    payload = b"x" * 64
    sockets = {label: socket.create_connection(where, timeout=5) for label, where in targets.items()}
    samples: Dict[str, List[float]] = {label: [] for label in targets}
    try:
        for sock in sockets.values():
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _round in range(count + warm_up):
            for label, sock in sockets.items():
                started = time.perf_counter()
                sock.sendall(payload)
                got = 0
                while got < len(payload):
                    got += len(sock.recv(4096))
                samples[label].append(time.perf_counter() - started)
    finally:
        for sock in sockets.values():
            sock.close()
    return {label: values[warm_up:] for label, values in samples.items()}


def echo_throughput(host: str, port: int, megabytes: int) -> float:
    """MB/s of data sent and echoed back."""
    block = b"y" * 65536
    total = megabytes * 1024 * 1024
    with socket.create_connection((host, port), timeout=10) as sock:
        started = time.perf_counter()
        sent = received = 0
        sock.setblocking(True)
        while received < total:
            if sent < total and sent - received < 4 * 1024 * 1024:
                sock.sendall(block)
                sent += len(block)
            received += len(sock.recv(1 << 20))
        return megabytes / (time.perf_counter() - started)


def setup_cost(lab: Lab, count: int) -> Dict[str, float]:
    netns_t, connect_t, disconnect_t, delete_t = [], [], [], []
    made = []
    for _container in range(count):
        container_id = lab.new_id()
        started = time.perf_counter()
        path = lab.net.create_netns(container_id)
        created = time.perf_counter()
        attachment = lab.net.connect(container_id, path, ports=["8080", "53/udp"])
        connect_t.append(time.perf_counter() - created)
        netns_t.append(created - started)
        made.append((container_id, path, attachment))
    for container_id, path, attachment in made:
        started = time.perf_counter()
        lab.net.disconnect(container_id, attachment.to_dict())
        disconnected = time.perf_counter()
        network.delete_netns(path)
        disconnect_t.append(disconnected - started)
        delete_t.append(time.perf_counter() - disconnected)
    return {
        "netns_ms": statistics.median(netns_t) * 1000,
        "connect_ms": statistics.median(connect_t) * 1000,
        "disconnect_ms": statistics.median(disconnect_t) * 1000,
        "delete_netns_ms": statistics.median(delete_t) * 1000,
    }


def measure(backend: str, requests: int, megabytes: int, exec_root: str) -> Dict[str, float]:
    results: Dict[str, float] = {}
    with Lab(backend=backend, exec_root=exec_root) as lab:
        results.update(setup_cost(lab, 20))
        standin = lab.start(ports=[str(GREETING_PORT), str(ECHO_PORT)], name="bench", tcp=(GREETING_PORT,))
        standin.servers.append(lab.serve(standin.netns, "bench-echo", tcp=(ECHO_PORT,), udp=(), echo=True))
        holder = portproxy.hold_published_ports(standin.attachment.to_dict())
        try:
            greeting = {
                "direct": (standin.ip, GREETING_PORT),
                "published": ("127.0.0.1", standin.host_port(GREETING_PORT)),
            }
            echo = {"direct": (standin.ip, ECHO_PORT), "published": ("127.0.0.1", standin.host_port(ECHO_PORT))}
            connection_latency(greeting, 50)  # warm-up (ARP, conntrack, caches)
            connections = connection_latency(greeting, requests)
            round_trips = request_latency(echo, requests)
            for label in greeting:
                results[f"{label}_conn_us"] = _median_us(connections[label])
                results[f"{label}_conn_p90_us"] = _p90_us(connections[label])
                results[f"{label}_req_us"] = _median_us(round_trips[label])
                results[f"{label}_mb_s"] = echo_throughput(*echo[label], megabytes)
        finally:
            holder.close()
            for server in standin.servers:
                server.kill()
                server.wait(5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--exec-root-dir", default="/run", help="where lab exec_roots go (tmpfs on real hosts)")
    parser.add_argument("--only", choices=("ports", "run"), help="run one of the two benchmarks")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of run -d -p ... nginx per tool")
    parser.add_argument("--no-docker", action="store_true", help="do not start dockerd for the comparison")
    args = parser.parse_args()
    if args.only in (None, "run"):
        from . import walkthrough

        walkthrough.main(args.rounds, not args.no_docker)
        if args.only == "run":
            return
        print()
    rows = {}
    for backend in ("nftables", "iptables", "none"):
        exec_root = tempfile.mkdtemp(prefix="berth-bench-net-", dir=args.exec_root_dir)
        try:
            rows[{"none": "proxy"}.get(backend, backend)] = measure(backend, args.requests, args.megabytes, exec_root)
        finally:
            shutil.rmtree(exec_root, ignore_errors=True)
    columns = [
        ("netns_ms", "netns ms"),
        ("connect_ms", "connect ms"),
        ("disconnect_ms", "disconn ms"),
        ("delete_netns_ms", "rm netns ms"),
        ("direct_conn_us", "direct conn us"),
        ("published_conn_us", "pub conn us"),
        ("direct_req_us", "direct req us"),
        ("published_req_us", "pub req us"),
        ("direct_mb_s", "direct MB/s"),
        ("published_mb_s", "pub MB/s"),
    ]
    print("path      " + "".join(f"{title:>15}" for _key, title in columns))
    for name, row in rows.items():
        print(f"{name:<10}" + "".join(f"{row[key]:>15.1f}" for key, _title in columns))
    for name, row in rows.items():
        ratio = row["published_conn_us"] / row["direct_conn_us"]
        print(
            f"{name}: published/direct per-connection latency = {ratio:.2f}x, per-request = "
            f"{row['published_req_us'] / row['direct_req_us']:.2f}x"
        )


if __name__ == "__main__":
    main()
