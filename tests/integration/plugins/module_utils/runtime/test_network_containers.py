"""The walkthrough's network at the container level: ``berth run -p``, ``ps``, ``port``, ``inspect``, ``logs``.

Real containers from the fixture images (Debian + nginx-light, busybox) pulled
from the real registry through the mirror entry, on the session's own bridge
(``host`` fixture).  Published ports are free ports chosen here (the demo uses
88); traffic goes to 127.0.0.1 and the containers' addresses only.
"""

import ipaddress
import json
import re
import secrets
import socket
from typing import Iterator, List

import pytest
from support.berth_env import BerthEnv
from support.berth_net import http_get, inspect, network_state, udp_exchange, wait_http
from support.procs import free_port

# Debian's perl-base (in the nginx image) has sockets: a UDP echo server in one line.
UDP_ECHO = (
    '$s = IO::Socket::INET->new(LocalPort => 5353, Proto => "udp") or die "udp: $!";'
    ' while (defined $s->recv($m, 2048)) { $s->send("echo:$m") }'
)
HTTPD = "mkdir -p /www && echo hello from {name} > /www/index.html && exec httpd -f -v -p 8080 -h /www"


class Started:
    """The containers one test started (``rm -f`` for all of them afterwards)."""

    def __init__(self, env: BerthEnv) -> None:
        self.env = env
        self.names: List[str] = []

    def name(self, prefix: str) -> str:
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.names.append(name)
        return name

    def run(self, prefix: str, *args: str) -> str:
        name = self.name(prefix)
        self.env.berth("run", "-d", "--name", name, *args)
        return name

    def httpd(self, prefix: str, *options: str) -> str:
        name = self.name(prefix)
        self.env.berth("run", "-d", "--name", name, *options, "busybox", "sh", "-c", HTTPD.format(name=name))
        return name

    def remove_all(self) -> None:
        for name in self.names:
            result = self.env.berth("rm", "-f", name, check=False)
            assert result.returncode == 0 or "no such container" in result.stderr, result.stderr


@pytest.fixture
def started(host: BerthEnv) -> Iterator[Started]:
    made = Started(host)
    try:
        yield made
    finally:
        made.remove_all()


def _exec(env: BerthEnv, name: str, script: str, check: bool = True) -> str:
    return env.berth("exec", name, "sh", "-c", script, check=check).stdout


def _bridge(env: BerthEnv) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(env.settings["bip"])


def test_nginx_answers_on_the_published_port_and_logs_the_request(host: BerthEnv, started: Started) -> None:
    before = network_state(host)
    port = free_port()
    web = started.run("web", "-p", f"{port}:80", "nginx")
    status, body = wait_http(port)
    assert status == 200
    assert "<title>Welcome to nginx!</title>" in body
    container_id = host.runtime().get(web).id
    request = re.compile(r'"GET / HTTP/1\.1" 200 \d+ "-" "berth-test"')
    assert request.search(host.berth("logs", web).stdout), host.berth("logs", web)

    assert host.berth("port", web).stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    assert host.berth("port", web, "80").stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    assert host.berth("port", web, "81/tcp").stdout == ""
    ps = host.berth("ps").stdout.splitlines()
    header, row = ps[0], next(line for line in ps if line.endswith(web))
    assert row[header.index("PORTS") :].startswith(f"0.0.0.0:{port}->80/tcp")
    assert row.startswith(container_id[:12])

    settings = inspect(host, web)["NetworkSettings"]
    bridge = _bridge(host)
    assert ipaddress.IPv4Address(settings["IPAddress"]) in bridge.network
    assert settings["IPPrefixLen"] == bridge.network.prefixlen
    assert settings["Gateway"] == str(bridge.ip)
    assert settings["Bridge"] == host.settings["bridge"]
    assert settings["MacAddress"] == "02:42:" + ":".join(
        f"{byte:02x}" for byte in ipaddress.IPv4Address(settings["IPAddress"]).packed
    )
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert http_get(settings["IPAddress"], 80)[0] == 200, "the container's own address answers too"

    host.berth("rm", "-f", web)
    with pytest.raises(ConnectionRefusedError):
        http_get("127.0.0.1", port, timeout=1)
    assert network_state(host, [container_id]) == before


def test_busybox_httpd_beside_nginx_on_other_ports(host: BerthEnv, started: Started) -> None:
    nginx_port, httpd_port = free_port(), free_port()
    started.run("web", "-p", f"{nginx_port}:80", "nginx")
    httpd = started.httpd("httpd", "-p", f"127.0.0.1:{httpd_port}:8080")
    assert wait_http(httpd_port) == (200, f"hello from {httpd}\n")
    assert "Welcome to nginx!" in wait_http(nginx_port)[1]
    assert host.berth("port", httpd).stdout == f"8080/tcp -> 127.0.0.1:{httpd_port}\n"
    addresses = {inspect(host, name)["NetworkSettings"]["IPAddress"] for name in started.names}
    assert len(addresses) == 2


def test_containers_reach_each_other_by_address_name_and_alias(host: BerthEnv, started: Started) -> None:
    server = started.httpd("server", "--network-alias", "api")
    server_ip = inspect(host, server)["NetworkSettings"]["IPAddress"]
    client = started.run("client", "--network-alias", "worker", "nginx", "sleep", "300")
    client_ip = inspect(host, client)["NetworkSettings"]["IPAddress"]
    fetch = "exec 3<>/dev/tcp/{0}/8080 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
    for target in (server_ip, server, "api"):
        answer = host.berth("exec", client, "bash", "-c", fetch.format(target)).stdout
        assert answer.startswith("HTTP/1."), (target, answer)
        assert answer.endswith(f"hello from {server}\n"), (target, answer)
    # The server started first: its /etc/hosts learnt the client's names when the client came.
    hosts = _exec(host, server, "cat /etc/hosts")
    assert f"{client_ip}\t{client} worker" in hosts.splitlines()
    assert f"{server_ip}\t{server} api" in hosts.splitlines()
    assert _exec(
        host, server, f"ping -c 1 -W 2 {client} >/dev/null && ping -c 1 -W 2 worker >/dev/null && echo ok"
    ) == ("ok\n")
    host.berth("rm", "-f", client)
    assert client not in _exec(host, server, "cat /etc/hosts"), "a removed container's names leave the others"
    assert host.runtime().get(server).observe()["status"] == "running"


def test_udp_publish(host: BerthEnv, started: Started) -> None:
    port = free_port()
    echo = started.run("udp", "-p", f"{port}:5353/udp", "nginx", "perl", "-MIO::Socket::INET", "-e", UDP_ECHO)
    assert udp_exchange(port, b"ping over udp\n") == b"echo:ping over udp\n"
    assert host.berth("port", echo).stdout == f"5353/udp -> 0.0.0.0:{port}\n"
    row = next(line for line in host.berth("ps").stdout.splitlines() if line.endswith(echo))
    assert f"0.0.0.0:{port}->5353/udp" in row


def test_a_taken_host_port_is_a_clear_error_and_leaves_nothing(host: BerthEnv, started: Started) -> None:
    before = network_state(host)
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        name = started.name("clash")
        result = host.berth("run", "-d", "--name", name, "-p", f"{port}:80", "nginx", check=False)
        assert result.returncode == 125
        assert f"host port 0.0.0.0:{port}/tcp is already in use" in result.stderr
        assert "python" in result.stderr, "the holder is named"
        container = host.runtime().get(name)
        state = container.observe()
        assert state["status"] != "running"
        assert not state.get("network")
        assert network_state(host, [container.id]) == before
        known = host.container_ids()
        gone = host.berth("run", "--rm", "-d", "-p", f"{port}:80", "nginx", check=False)
        assert gone.returncode == 125
        assert host.container_ids() == known, "run --rm removed the container it could not start"
        assert network_state(host) == before
    # The port is free again: the same container now starts.
    host.berth("start", name)
    assert "Welcome to nginx!" in wait_http(port)[1]


def test_run_rm_leaves_no_container_behind_after_a_port_clash(host: BerthEnv) -> None:
    known = set(host.container_ids())
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = host.berth("run", "--rm", "-d", "-p", f"127.0.0.1:{port}:80", "busybox", "sleep", "60", check=False)
    assert result.returncode == 125
    assert "already in use" in result.stderr
    assert set(host.container_ids()) == known


def test_network_modes_host_none_and_container(host: BerthEnv, started: Started) -> None:
    links = host.berth("run", "--rm", "--network", "host", "busybox", "cat", "/proc/net/dev").stdout
    assert host.settings["bridge"] in links, "host mode sees the host's interfaces"
    alone = host.berth("run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev").stdout
    assert [line.split(":")[0].strip() for line in alone.splitlines()[2:]] == ["lo"]
    port = free_port()
    web = started.run("web", "-p", f"{port}:80", "nginx")
    wait_http(port)
    web_ip = inspect(host, web)["NetworkSettings"]["IPAddress"]
    sidecar = started.run("sidecar", "--network", f"container:{web}", "busybox", "sleep", "300")
    assert "Welcome to nginx!" in _exec(host, sidecar, "wget -qO- http://127.0.0.1:80/")
    assert web_ip in _exec(host, sidecar, "ip -4 addr show eth0")
    assert inspect(host, sidecar)["HostConfig"]["NetworkMode"] == f"container:{web}"
    refused = host.berth("run", "--rm", "--network", "host", "-p", "80:80", "busybox", "true", check=False)
    assert refused.returncode == 125
    assert "need network_mode bridge" in refused.stderr
    # The sharer leaves; the owner's network is untouched.
    host.berth("rm", "-f", sidecar)
    assert "Welcome to nginx!" in wait_http(port)[1]


def test_network_ls_and_inspect(host: BerthEnv, started: Started) -> None:
    port = free_port()
    web = started.run("web", "--network-alias", "www", "-p", f"{port}:80", "nginx")
    container_id = host.runtime().get(web).id
    ls = host.berth("network", "ls").stdout.splitlines()
    assert ls[0].split() == ["NAME", "DRIVER", "SUBNET", "GATEWAY", "BACKEND", "CONTAINERS"]
    bridge = _bridge(host)
    fields = ls[1].split()
    assert fields[:4] == [host.settings["bridge"], "bridge", str(bridge.network), str(bridge.ip)]
    assert fields[4] in ("nftables", "iptables")
    assert int(fields[5]) >= 1
    details = json.loads(host.berth("network", "inspect").stdout)[0]
    assert details["Name"] == host.settings["bridge"]
    assert details["Driver"] == "bridge"
    assert details["IPAM"]["Config"] == [{"Subnet": str(bridge.network), "Gateway": str(bridge.ip)}]
    endpoint = details["Containers"][container_id]
    ip = inspect(host, web)["NetworkSettings"]["IPAddress"]
    assert endpoint["Name"] == web
    assert endpoint["IPv4Address"] == f"{ip}/{bridge.network.prefixlen}"
    assert endpoint["Aliases"] == ["www"]
    assert endpoint["Ports"] == [f"0.0.0.0:{port}->80/tcp"]
    assert details["Berth"]["backend"] == fields[4]
    info = host.berth("info").stdout
    assert f"Network Bridge: {host.settings['bridge']} {bridge.network}" in info
    assert re.search(r"^IP Forwarding: (on|off) \(ip-forward: false\)$", info, re.MULTILINE), info
    network_lines = [line for line in info.splitlines() if line.startswith(("Network", "Published", "IP ", "Outbound"))]
    assert len(network_lines) == 4
    assert not any("{" in line for line in network_lines), "no raw dicts"
