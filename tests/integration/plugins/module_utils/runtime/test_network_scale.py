"""Many containers: parallel connects from separate processes, and 100 connect/disconnect cycles."""

import json
import subprocess
import sys
import textwrap
import time
from typing import Dict, List

import pytest
from support.netlab import EMPTY, Lab, StandIn, tcp_request, tcp_request_from

from ansible_collections.berth.containers.plugins.module_utils.runtime import network

PARALLEL_CONNECT = textwrap.dedent(
    """
    import json, sys, time
    sys.path[:] = {path!r}
    from ansible_collections.berth.containers.plugins.module_utils.runtime import config, network
    net = network.BridgeNetwork(config.DaemonConfig(**{settings!r}))
    path = net.create_netns({container_id!r})
    while time.time() < {start_at!r}:
        time.sleep(0.001)
    attachment = net.connect({container_id!r}, path, ports=["8080"], name={name!r})
    print(json.dumps({{"netns": path, "attachment": attachment.to_dict()}}))
    """
)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_ten_parallel_connects_get_distinct_addresses_and_all_answer(backend: str) -> None:
    with Lab(backend=backend) as lab:
        settings = {"exec_root": lab.exec_root, "bridge": lab.bridge, "bip": lab.config.bip, "ip_forward": False}
        settings["firewall_backend"] = backend
        start_at = time.time() + 1.5
        procs = []
        for number in range(10):
            container_id = lab.new_id()
            script = PARALLEL_CONNECT.format(
                path=sys.path, settings=settings, container_id=container_id, start_at=start_at, name=f"c{number}"
            )
            procs.append(
                (
                    container_id,
                    subprocess.Popen(
                        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    ),
                )
            )
        standins: List[StandIn] = []
        for container_id, proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            made = json.loads(out)
            standin = StandIn(container_id, made["netns"], network.Attachment.from_dict(made["attachment"]))
            lab.standins.append(standin)
            standins.append(standin)
        addresses = {standin.ip for standin in standins}
        host_ports = {standin.host_port(8080) for standin in standins}
        assert len(addresses) == 10
        assert len(host_ports) == 10
        for standin in standins:
            standin.server = lab.serve(standin.netns, standin.attachment.name, tcp=(8080,), udp=())
        for standin in standins:
            greeting = f"hello {standin.attachment.name} from".encode()
            assert tcp_request("127.0.0.1", standin.host_port(8080)).startswith(greeting)
            assert tcp_request_from(standins[0].netns, standin.ip, 8080).startswith(greeting)
        assert sorted(lab.snapshot()["leases"]) == sorted(standin.container_id for standin in standins)


def _cycles(lab: Lab, count: int) -> Dict[str, float]:
    connect, disconnect = [], []
    for _cycle in range(count):
        container_id = lab.new_id()
        path = lab.net.create_netns(container_id)
        started = time.perf_counter()
        attachment = lab.net.connect(container_id, path, ports=["8080", "127.0.0.1::53/udp"])
        connected = time.perf_counter()
        lab.net.disconnect(container_id, attachment.to_dict())
        network.delete_netns(path)
        connect.append(connected - started)
        disconnect.append(time.perf_counter() - connected)
    connect.sort()
    disconnect.sort()
    return {"connect_ms": connect[count // 2] * 1000, "disconnect_ms": disconnect[count // 2] * 1000}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["nftables", "iptables", "none"])
def test_a_hundred_cycles_leave_nothing_behind(backend: str) -> None:
    with Lab(backend=backend) as lab:
        keeper = lab.start(ports=["8080"], name="keeper", serve=False)  # cycles run beside a live container
        before = lab.snapshot()
        timings = _cycles(lab, 100)
        assert lab.snapshot() == before
        print(
            f"\n{backend}: median connect {timings['connect_ms']:.1f} ms, disconnect {timings['disconnect_ms']:.1f} ms"
        )
        lab.remove(keeper)
        _cycles(lab, 1)
        assert lab.snapshot() == EMPTY
