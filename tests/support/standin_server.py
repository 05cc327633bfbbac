"""A stand-in for a container's service: tiny TCP and UDP servers, run inside a network namespace.

``python standin_server.py NAME --tcp 8080 --udp 53`` prints ``ready`` once
every socket listens.  TCP answers ``hello NAME from <peer address>`` and
closes (or, with ``--echo``, echoes until the peer closes); UDP answers
``NAME:<datagram>``.  Started by :mod:`support.netlab` through ``nsenter``.
"""

import argparse
import socket
import threading
from typing import List, Optional


def _serve_tcp(listener: socket.socket, name: str, echo: bool) -> None:
    while True:
        client, peer = listener.accept()
        threading.Thread(target=_answer, args=(client, peer, name, echo), daemon=True).start()


def _answer(client: socket.socket, peer: tuple, name: str, echo: bool) -> None:
    with client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not echo:
            client.sendall(f"hello {name} from {peer[0]}\n".encode())
            return
        while True:
            data = client.recv(65536)
            if not data:
                return
            client.sendall(data)


def _serve_udp(sock: socket.socket, name: str) -> None:
    while True:
        data, peer = sock.recvfrom(65536)
        sock.sendto(name.encode() + b":" + data, peer)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--tcp", type=int, action="append", default=[])
    parser.add_argument("--udp", type=int, action="append", default=[])
    parser.add_argument("--echo", action="store_true")
    args = parser.parse_args(argv)
    threads = []
    for port in args.tcp:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(128)
        threads.append(threading.Thread(target=_serve_tcp, args=(listener, args.name, args.echo), daemon=True))
    for port in args.udp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        threads.append(threading.Thread(target=_serve_udp, args=(sock, args.name), daemon=True))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
