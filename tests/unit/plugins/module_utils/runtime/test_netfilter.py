"""Firewall rules as text: what berth asks nft and iptables-restore to do, and how it reads their listings.

The real front-ends run in the integration tests; here a recording runner
stands in for them so every generated command can be checked exactly.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import netfilter
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import NetworkError
from ansible_collections.berth.containers.plugins.module_utils.runtime.netfilter import Dnat, FirewallPlan

PLAN = FirewallPlan("bt42", "10.231.42.0/24", masquerade=True, gateway="10.231.42.1")
DEFAULT_PLAN = FirewallPlan("berth0", "10.89.0.0/16", masquerade=False)
WEB = Dnat("tcp", "", 8080, "10.231.42.2", 80)
DNS = Dnat("udp", "127.0.0.1", 5353, "10.231.42.2", 53)


class Recorder:
    """A runner that answers from a script of outputs and records every call."""

    def __init__(self, outputs: Optional[Dict[str, str]] = None, failures: Optional[Dict[str, str]] = None) -> None:
        self.calls: List[Tuple[Tuple[str, ...], Optional[str]]] = []
        self.outputs = outputs or {}
        self.failures = failures or {}

    def __call__(self, argv: Sequence[str], stdin: Optional[str] = None) -> str:
        self.calls.append((tuple(argv), stdin))
        key = " ".join(argv)
        for prefix, stderr in self.failures.items():
            if key.startswith(prefix):
                raise netfilter.CommandFailed(argv, stderr)
        for prefix, out in self.outputs.items():
            if key.startswith(prefix):
                return out
        return ""

    def scripts(self) -> List[str]:
        return [stdin for _argv, stdin in self.calls if stdin]


def test_names_are_per_bridge_and_short_enough_for_iptables() -> None:
    assert DEFAULT_PLAN.nft_table == "berth"
    assert DEFAULT_PLAN.dnat_chain == "BERTH-DNAT"
    longest = FirewallPlan("b" * 15, "10.0.0.0/24", True)
    assert longest.nft_table == "berth-" + "b" * 15
    for chain in (longest.dnat_chain, longest.snat_chain, longest.forward_chain):
        assert len(chain) <= 28


def test_fingerprint_follows_the_settings() -> None:
    assert PLAN.fingerprint == FirewallPlan("bt42", "10.231.42.0/24", True, "10.231.42.1").fingerprint
    assert PLAN.fingerprint != FirewallPlan("bt42", "10.231.42.0/24", False, "10.231.42.1").fingerprint
    assert PLAN.fingerprint != FirewallPlan("bt42", "10.231.43.0/24", True, "10.231.42.1").fingerprint
    assert PLAN.fingerprint != FirewallPlan("bt42", "10.231.42.0/24", True, "10.231.42.254").fingerprint


def test_nft_base_replaces_the_table_atomically_with_local_dnat_and_masquerade() -> None:
    commands = netfilter.nft_base_commands(PLAN)
    assert commands[:3] == ["add table ip berth-bt42", "delete table ip berth-bt42", "add table ip berth-bt42"]
    text = "\n".join(commands)
    assert "prerouting fib daddr type local jump hostports" in text
    assert "output fib daddr type local jump hostports" in text
    assert 'postrouting oifname "bt42" ip saddr 127.0.0.0/8 masquerade' in text
    assert 'postrouting oifname "bt42" ip saddr 10.231.42.0/24 ct status dnat masquerade' in text
    assert 'ip saddr 10.231.42.0/24 oifname != "bt42" masquerade' in text
    assert f"berth-base:{PLAN.fingerprint}" in text
    assert "isolation { type filter hook prerouting priority -300;" in text
    assert 'isolation iifname != "bt42" ip daddr 10.231.42.0/24 ip daddr != 10.231.42.1 drop' in text
    without = "\n".join(netfilter.nft_base_commands(FirewallPlan("bt42", "10.231.42.0/24", False)))
    assert "oifname !=" not in without


def test_nft_dnat_rules_carry_the_owner() -> None:
    assert netfilter.nft_dnat_rule(PLAN, "abc", WEB) == (
        'add rule ip berth-bt42 hostports tcp dport 8080 dnat to 10.231.42.2:80 comment "berth:abc"'
    )
    assert netfilter.nft_dnat_rule(PLAN, "abc", DNS) == (
        'add rule ip berth-bt42 hostports ip daddr 127.0.0.1 udp dport 5353 dnat to 10.231.42.2:53 comment "berth:abc"'
    )


NFT_LISTING = """table ip berth-bt42 { # handle 7
\tchain prerouting { # handle 1
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump hostports comment "berth-base:FP" # handle 8
\t}
\tchain hostports { # handle 5
\t\ttcp dport 8080 dnat to 10.231.42.2:80 comment "berth:abc" # handle 12
\t\tudp dport 5353 dnat to 10.231.42.3:53 comment "berth:def" # handle 13
\t\tip daddr 127.0.0.1 tcp dport 81 dnat to 10.231.42.2:81 comment "berth:abc" # handle 14
\t}
}
""".replace("FP", PLAN.fingerprint)


def test_parse_nft_listing() -> None:
    rules = netfilter.parse_nft_listing(NFT_LISTING)
    assert [(rule.chain, rule.comment, rule.handle) for rule in rules] == [
        ("prerouting", f"berth-base:{PLAN.fingerprint}", "8"),
        ("hostports", "berth:abc", "12"),
        ("hostports", "berth:def", "13"),
        ("hostports", "berth:abc", "14"),
    ]


def test_nft_ensure_builds_only_when_missing_or_outdated() -> None:
    absent = Recorder(failures={"nft -a list": "Error: No such file or directory\n"})
    firewall = netfilter.NftablesFirewall(PLAN, absent)
    assert firewall.ensure({"abc": [WEB]}) is True
    script = absent.scripts()[0]
    assert script.startswith("add table ip berth-bt42\ndelete table ip berth-bt42\n")
    assert 'dport 8080 dnat to 10.231.42.2:80 comment "berth:abc"' in script

    current = Recorder(outputs={"nft -a list": NFT_LISTING})
    assert netfilter.NftablesFirewall(PLAN, current).ensure({"abc": [WEB]}) is False
    assert current.scripts() == []

    outdated = Recorder(outputs={"nft -a list": NFT_LISTING.replace(PLAN.fingerprint, "0" * 12)})
    assert netfilter.NftablesFirewall(PLAN, outdated).ensure({}) is True


def test_nft_remove_deletes_exactly_the_owners_handles() -> None:
    recorder = Recorder(outputs={"nft -a list": NFT_LISTING})
    firewall = netfilter.NftablesFirewall(PLAN, recorder)
    assert firewall.owners() == {"abc", "def"}
    assert firewall.remove(["abc"]) == 2
    assert recorder.scripts() == [
        "delete rule ip berth-bt42 hostports handle 12\ndelete rule ip berth-bt42 hostports handle 14\n"
    ]
    assert firewall.remove(["nobody"]) == 0
    assert len(recorder.scripts()) == 1


def test_nft_errors_other_than_a_missing_table_surface() -> None:
    broken = Recorder(failures={"nft -a list": "Error: Operation not permitted\n"})
    with pytest.raises(NetworkError, match="Operation not permitted"):
        netfilter.NftablesFirewall(PLAN, broken).present()


SAVE_NAT = """# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:BERTH-DNAT-bt42 - [0:0]
:BERTH-SNAT-bt42 - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "berth-base:FP" -j BERTH-DNAT-bt42
-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment berth -j BERTH-DNAT-bt42
-A POSTROUTING -m comment --comment berth -j BERTH-SNAT-bt42
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A BERTH-DNAT-bt42 -p tcp -m tcp --dport 8080 -m comment --comment "berth:abc" -j DNAT --to-destination 10.231.42.2:80
-A BERTH-DNAT-bt42 -p udp -m udp --dport 53 -m comment --comment "berth:def" -j DNAT --to-destination 10.231.42.3:53
COMMIT
""".replace("FP", PLAN.fingerprint)
SAVE_FILTER = """*filter
:FORWARD ACCEPT [0:0]
:BERTH-FWD-bt42 - [0:0]
-A FORWARD -m comment --comment "berth-base:FP" -j BERTH-FWD-bt42
-A BERTH-FWD-bt42 -i bt42 -j ACCEPT
COMMIT
""".replace("FP", PLAN.fingerprint)


SAVE_RAW = """*raw
:PREROUTING ACCEPT [0:0]
:BERTH-RAW-bt42 - [0:0]
-A PREROUTING -m comment --comment "berth-base:FP" -j BERTH-RAW-bt42
-A BERTH-RAW-bt42 -d 10.231.42.1/32 -j RETURN
-A BERTH-RAW-bt42 -d 10.231.42.0/24 ! -i bt42 -j DROP
COMMIT
""".replace("FP", PLAN.fingerprint)
SAVED = {
    "iptables-save -t nat": SAVE_NAT,
    "iptables-save -t filter": SAVE_FILTER,
    "iptables-save -t raw": SAVE_RAW,
    "iptables-save": SAVE_NAT + SAVE_FILTER + SAVE_RAW,
}


def test_parse_iptables_save() -> None:
    saved = netfilter.parse_iptables_save(SAVE_NAT)
    assert "BERTH-DNAT-bt42" in saved.chains["nat"]
    comments = [(rule.chain, rule.comment) for rule in saved.rules["nat"]]
    assert ("OUTPUT", "berth") in comments
    assert ("BERTH-DNAT-bt42", "berth:def") in comments
    assert ("POSTROUTING", "") in comments


def test_iptables_dnat_rule_matches_what_iptables_save_prints() -> None:
    line = netfilter.iptables_dnat_rule(PLAN, "abc", WEB)
    assert line in SAVE_NAT
    assert "-d 127.0.0.1/32 -p udp -m udp --dport 5353" in netfilter.iptables_dnat_rule(PLAN, "x", DNS)


def test_iptables_ensure_rebuilds_replacing_old_jumps() -> None:
    stale = SAVE_NAT.replace(PLAN.fingerprint, "0" * 12)
    recorder = Recorder(outputs={"iptables-save": stale + SAVE_FILTER + SAVE_RAW})
    firewall = netfilter.IptablesFirewall(PLAN, recorder)
    assert firewall.ensure({"abc": [WEB]}) is True
    argv, script = next(call for call in recorder.calls if call[1])
    assert argv == ("iptables-restore", "-w", "--noflush")
    lines = script.splitlines()
    deletions = [line for line in lines if line.startswith("-D")]
    assert f'-D PREROUTING -m addrtype --dst-type LOCAL -m comment --comment "berth-base:{"0" * 12}"' in "\n".join(
        deletions
    )
    assert not any("docker0" in line for line in lines)
    assert lines.index(":BERTH-DNAT-bt42 - [0:0]") > lines.index(deletions[0])
    assert f'-I FORWARD 1 -m comment --comment "berth-base:{PLAN.fingerprint}" -j BERTH-FWD-bt42' in lines
    assert netfilter.iptables_dnat_rule(PLAN, "abc", WEB) in lines
    assert "-A BERTH-RAW-bt42 -d 10.231.42.0/24 ! -i bt42 -j DROP" in lines
    assert lines.index("-A BERTH-RAW-bt42 -d 10.231.42.1/32 -j RETURN") < lines.index(
        "-A BERTH-RAW-bt42 -d 10.231.42.0/24 ! -i bt42 -j DROP"
    )

    current = Recorder(outputs=SAVED)
    assert netfilter.IptablesFirewall(PLAN, current).ensure({}) is False
    assert [argv for argv, _stdin in current.calls] == [("iptables-save",)]  # one call on the connect path


def test_iptables_remove_and_remove_all() -> None:
    recorder = Recorder(outputs=SAVED)
    firewall = netfilter.IptablesFirewall(PLAN, recorder)
    assert firewall.owners() == {"abc", "def"}
    assert firewall.remove(["def"]) == 1
    assert recorder.scripts()[-1] == (
        '*nat\n-D BERTH-DNAT-bt42 -p udp -m udp --dport 53 -m comment --comment "berth:def" '
        "-j DNAT --to-destination 10.231.42.3:53\nCOMMIT\n"
    )
    firewall.remove_all()
    script = recorder.scripts()[-1]
    assert "-X BERTH-DNAT-bt42" in script
    assert "-X BERTH-FWD-bt42" in script
    assert "-X BERTH-RAW-bt42" in script
    assert "-D POSTROUTING -m comment --comment berth -j BERTH-SNAT-bt42" in script
    assert "docker0" not in script


def test_no_firewall_does_nothing() -> None:
    firewall = netfilter.NoFirewall(PLAN)
    assert firewall.ensure({"a": [WEB]}) is False
    assert firewall.remove(["a"]) == 0
    assert not firewall.present()


@pytest.mark.parametrize(
    ("setting", "tools", "expected"),
    [
        ("auto", {"nft", "iptables-save", "iptables-restore"}, "nftables"),
        ("auto", {"iptables-save", "iptables-restore"}, "iptables"),
        ("auto", {"iptables-save"}, "none"),
        ("auto", set(), "none"),
        ("iptables", {"nft", "iptables-save", "iptables-restore"}, "iptables"),
        ("none", {"nft"}, "none"),
    ],
)
def test_backend_selection(setting: str, tools: set, expected: str) -> None:
    assert netfilter.select_backend(setting, lambda name: f"/usr/sbin/{name}" if name in tools else None) == expected


def test_a_forced_backend_that_is_missing_is_a_clear_error() -> None:
    with pytest.raises(NetworkError, match="nft command is not installed"):
        netfilter.select_backend("nftables", lambda name: None)
    with pytest.raises(NetworkError, match="iptables-save/iptables-restore are not installed"):
        netfilter.select_backend("iptables", lambda name: None)


DOCKER_FILTER = """*filter
:FORWARD DROP [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -j RETURN
COMMIT
"""


def _coexistence(saved: str) -> Tuple[netfilter.DockerCoexistence, Recorder]:
    recorder = Recorder(outputs={"iptables-save -t filter": saved})
    return netfilter.DockerCoexistence(PLAN, recorder, which=lambda name: f"/usr/sbin/{name}"), recorder


def test_docker_user_gets_accepts_for_the_bridge_once() -> None:
    coexistence, recorder = _coexistence(DOCKER_FILTER)
    coexistence.sync(True)
    assert recorder.scripts() == ["*filter\n" + "\n".join(netfilter.docker_user_rules(PLAN)) + "\nCOMMIT\n"]
    installed = DOCKER_FILTER.replace(
        "-A DOCKER-USER -j RETURN",
        "\n".join(rule.replace("-I ", "-A ", 1) for rule in netfilter.docker_user_rules(PLAN))
        + "\n-A DOCKER-USER -j RETURN",
    )
    coexistence, recorder = _coexistence(installed)
    coexistence.sync(True)
    assert recorder.scripts() == []
    coexistence.sync(False)
    assert recorder.scripts()[0].count("-D DOCKER-USER") == 2


def test_docker_user_rules_of_old_settings_are_replaced_and_no_docker_means_nothing() -> None:
    old = FirewallPlan("bt42", "10.231.99.0/24", True)
    stale = DOCKER_FILTER.replace(
        "-A DOCKER-USER -j RETURN",
        "\n".join(rule.replace("-I ", "-A ", 1) for rule in netfilter.docker_user_rules(old)),
    )
    coexistence, recorder = _coexistence(stale)
    coexistence.sync(True)
    script = recorder.scripts()[0]
    assert script.count("-D DOCKER-USER") == 2
    assert script.count(f"berth-base:{PLAN.fingerprint}") == 2
    coexistence, recorder = _coexistence(SAVE_FILTER)
    coexistence.sync(True)
    assert recorder.scripts() == []
