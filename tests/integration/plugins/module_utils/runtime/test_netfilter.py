"""``nft`` commands run in-process through libnftables give what the ``nft`` program gives.

Inside a private network namespace (nftables rulesets are per namespace), so
nothing touches the host's firewall.
"""

import os
import subprocess
import tempfile
from typing import Iterator

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import netfilter, netns

TABLE = "berth-libtest"


@pytest.fixture
def space() -> Iterator[str]:
    work = tempfile.mkdtemp(prefix="berth-nft-", dir="/run")
    path = netns.create(os.path.join(work, "ns"))
    try:
        yield path
    finally:
        netns.delete(path)
        os.rmdir(work)


def program(space: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={space}", "nft", *args], capture_output=True, text=True, check=False)


def test_in_process_nft_matches_the_program(space: str) -> None:
    library = netfilter._libnftables()
    assert library is not None, "libnftables1 is installed with nftables: apt-get install nftables"
    commands = (
        f"add table ip {TABLE}\n"
        f"add chain ip {TABLE} output {{ type nat hook output priority -100; }}\n"
        f'add rule ip {TABLE} output tcp dport 8080 dnat to 10.77.0.2:80 comment "berth:abc"\n'
    )
    with netns.entered(space):
        assert netfilter.run_command(["nft", "-f", "-"], commands) == ""
        listed = netfilter.run_command(["nft", "-a", "list", "table", "ip", TABLE])
        plain = netfilter.run_command(["nft", "list", "table", "ip", TABLE])
    assert listed == program(space, "-a", "list", "table", "ip", TABLE).stdout
    assert plain == program(space, "list", "table", "ip", TABLE).stdout
    rules = netfilter.parse_nft_listing(listed)
    assert [(rule.chain, rule.comment) for rule in rules] == [("output", "berth:abc")]
    assert rules[0].handle.isdigit()
    with netns.entered(space):
        netfilter.run_command(["nft", "-f", "-"], f"delete table ip {TABLE}\n")
        with pytest.raises(netfilter.CommandFailed, match="No such file or directory") as refused:
            netfilter.run_command(["nft", "-a", "list", "table", "ip", TABLE])
    assert "No such file or directory" in program(space, "list", "table", "ip", TABLE).stderr
    assert refused.value.stderr.startswith("Error: No such file or directory")
