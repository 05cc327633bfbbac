"""NAT for published ports and masquerading: berth's own nftables table, or iptables chains.

Everything lives in objects berth owns, one set per bridge, so a flush removes
berth's rules and nothing else:

* nftables: ``table ip berth`` (``berth-<bridge>`` for another bridge) with
  DNAT in ``prerouting`` and ``output`` for ``fib daddr type local`` (so
  127.0.0.1 and every host address work), masquerade in ``postrouting`` for
  127.0.0.0/8-sourced flows (needs ``route_localnet`` on the bridge), for
  hairpin flows (``ct status dnat`` from the bridge subnet back into it) and,
  with ``ip-masq``, for outbound traffic; ``forward`` accepts DNAT'd and
  bridge traffic; ``isolation`` (raw priority) drops packets for container
  addresses that arrive from anywhere but the bridge, so a neighbour routing
  via this host reaches containers only through published ports (Docker's
  "direct routing" protection).
* iptables (iptables-nft or legacy): chains ``BERTH-DNAT``, ``BERTH-SNAT``
  (nat), ``BERTH-FWD`` (filter) and ``BERTH-RAW`` (raw), suffixed
  ``-<bridge>`` for another bridge, with one jump each from the built-in chains.

The base objects carry a fingerprint of the settings they were made for (a
rule comment ``berth-base:<hash>``); a mismatch rebuilds them.  Each published
port is one DNAT rule commented ``berth:<container id>``, appended on connect
and deleted by handle (nft) or by spec (iptables) on disconnect.  Appending
never deletes anything, which keeps connect cheap: a transaction that deletes
rules waits for an RCU grace period (~14 ms measured here), one that only
adds takes ~2-3 ms.
"""

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Set, Tuple

from .config import DEFAULT_BRIDGE
from .errors import NetworkError

OWNER_PREFIX = "berth:"
BASE_PREFIX = "berth-base:"
# Bumped when the shape of the base objects changes, so old ones are rebuilt.
BASE_LAYOUT = "2"

NFTABLES = "nftables"
IPTABLES = "iptables"
NONE = "none"


@dataclass(frozen=True)
class Dnat:
    """One published port: (host_ip or any, host_port, protocol) -> dest_ip:dest_port."""

    protocol: str
    host_ip: str
    host_port: int
    dest_ip: str
    dest_port: int


@dataclass(frozen=True)
class FirewallPlan:
    """What the base objects of one bridge look like."""

    bridge: str
    subnet: str
    masquerade: bool
    gateway: str = ""

    @property
    def suffix(self) -> str:
        return "" if self.bridge == DEFAULT_BRIDGE else f"-{self.bridge}"

    @property
    def nft_table(self) -> str:
        return f"berth{self.suffix}"

    @property
    def dnat_chain(self) -> str:
        return f"BERTH-DNAT{self.suffix}"

    @property
    def snat_chain(self) -> str:
        return f"BERTH-SNAT{self.suffix}"

    @property
    def forward_chain(self) -> str:
        return f"BERTH-FWD{self.suffix}"

    @property
    def raw_chain(self) -> str:
        return f"BERTH-RAW{self.suffix}"

    @property
    def fingerprint(self) -> str:
        text = f"{BASE_LAYOUT}|{self.bridge}|{self.subnet}|{int(self.masquerade)}|{self.gateway}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def owner_comment(owner: str) -> str:
    return f"{OWNER_PREFIX}{owner}"


class CommandFailed(NetworkError):
    """A firewall command exited with an error; ``stderr`` says why."""

    def __init__(self, argv: Sequence[str], stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} failed: {stderr.strip() or 'no message'}")
        self.stderr = stderr


Runner = Callable[[Sequence[str], Optional[str]], str]


def run_command(argv: Sequence[str], stdin: Optional[str] = None) -> str:
    """Run a firewall front-end; its stdout, or :class:`CommandFailed`.

    ``nft`` commands go to libnftables in this process when the library loads
    (what the ``nft`` program itself calls, ~0.2 ms instead of a fork and exec of ~6 ms).
    """
    if os.path.basename(argv[0]) == "nft":
        library = _libnftables()
        if library is not None:
            return library.run(argv, stdin)
    return _run_program(argv, stdin)


def _run_program(argv: Sequence[str], stdin: Optional[str]) -> str:
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise CommandFailed(argv, exc.strerror or str(exc)) from None
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.stderr)
    return proc.stdout


class LibNftables:
    """``nft`` without the program: libnftables (ctypes), one context per command.

    A context's netlink socket belongs to the namespace it was made in, so none
    is kept between commands: each runs in the calling thread's namespace, as a
    fresh ``nft`` process would.
    """

    OUTPUT_HANDLE = 1 << 3  # NFT_CTX_OUTPUT_HANDLE: what `nft -a` shows

    def __init__(self, library: Any) -> None:
        self.lib = library
        self.lib.nft_ctx_new.restype = ctypes.c_void_p
        self.lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        self.lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(self.lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(self.lib, name).argtypes = [ctypes.c_void_p]
            getattr(self.lib, name).restype = ctypes.c_char_p
        self.lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self.lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def run(self, argv: Sequence[str], stdin: Optional[str]) -> str:
        """``nft -f -`` (commands on *stdin*), ``nft [-a] COMMAND...``; anything else goes to the program."""
        words = list(argv[1:])
        handles = words[:1] == ["-a"]
        if handles:
            words = words[1:]
        if words == ["-f", "-"]:
            text = stdin or ""
        elif words and not any(word.startswith("-") for word in words):
            text = " ".join(words)
        else:
            return _run_program(argv, stdin)
        context = self.lib.nft_ctx_new(0)
        if not context:
            raise CommandFailed(argv, "libnftables could not create a context")
        try:
            self.lib.nft_ctx_buffer_output(context)
            self.lib.nft_ctx_buffer_error(context)
            self.lib.nft_ctx_output_set_flags(context, self.OUTPUT_HANDLE if handles else 0)
            status = self.lib.nft_run_cmd_from_buffer(context, text.encode())
            output = (self.lib.nft_ctx_get_output_buffer(context) or b"").decode(errors="replace")
            error = (self.lib.nft_ctx_get_error_buffer(context) or b"").decode(errors="replace")
        finally:
            self.lib.nft_ctx_free(context)
        if status != 0:
            raise CommandFailed(argv, error)
        return output


_LIBNFTABLES: List[Optional[LibNftables]] = []


def _libnftables() -> Optional[LibNftables]:
    """The library, loaded once; None where it is missing (then the ``nft`` program is run)."""
    if not _LIBNFTABLES:
        try:
            _LIBNFTABLES.append(LibNftables(ctypes.CDLL("libnftables.so.1", use_errno=True)))
        except (OSError, AttributeError):
            _LIBNFTABLES.append(None)
    return _LIBNFTABLES[0]


# --------------------------------------------------------------------- nftables


@dataclass(frozen=True)
class ListedRule:
    """A rule of berth's table or chains as the front-end lists it."""

    chain: str
    comment: str
    handle: str
    text: str


_NFT_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_NFT_HANDLE = re.compile(r"\s# handle (\d+)\s*$")
_COMMENT = re.compile(r'comment "([^"]*)"')


def parse_nft_listing(text: str) -> List[ListedRule]:
    """Rules (chain, comment, handle) from ``nft -a list table`` output."""
    rules: List[ListedRule] = []
    chain = ""
    for line in text.splitlines():
        match = _NFT_CHAIN.match(line)
        if match:
            chain = match.group(1)
            continue
        handle = _NFT_HANDLE.search(line)
        stripped = line.strip()
        if not handle or not chain or stripped.startswith(("table ", "chain ")):
            continue
        comment = _COMMENT.search(line)
        rules.append(ListedRule(chain, comment.group(1) if comment else "", handle.group(1), stripped))
    return rules


def nft_dnat_rule(plan: FirewallPlan, owner: str, dnat: Dnat) -> str:
    match = f"ip daddr {dnat.host_ip} " if dnat.host_ip else ""
    return (
        f"add rule ip {plan.nft_table} hostports {match}{dnat.protocol} dport {dnat.host_port} "
        f'dnat to {dnat.dest_ip}:{dnat.dest_port} comment "{owner_comment(owner)}"'
    )


def nft_base_commands(plan: FirewallPlan) -> List[str]:
    """Commands that (re)create the table from nothing, atomically replacing an old one."""
    table = f"ip {plan.nft_table}"
    bridge = f'"{plan.bridge}"'
    base = f'comment "{BASE_PREFIX}{plan.fingerprint}"'
    commands = [
        f"add table {table}",
        f"delete table {table}",
        f"add table {table}",
        f"add chain {table} prerouting {{ type nat hook prerouting priority -100; policy accept; }}",
        f"add chain {table} output {{ type nat hook output priority -100; policy accept; }}",
        f"add chain {table} postrouting {{ type nat hook postrouting priority 100; policy accept; }}",
        f"add chain {table} forward {{ type filter hook forward priority 0; policy accept; }}",
        f"add chain {table} hostports",
        f"add chain {table} isolation {{ type filter hook prerouting priority -300; policy accept; }}",
        f"add rule {table} prerouting fib daddr type local jump hostports {base}",
        f"add rule {table} output fib daddr type local jump hostports",
        f"add rule {table} postrouting oifname {bridge} ip saddr 127.0.0.0/8 masquerade",
        f"add rule {table} postrouting oifname {bridge} ip saddr {plan.subnet} ct status dnat masquerade",
    ]
    if plan.masquerade:
        commands.append(f"add rule {table} postrouting ip saddr {plan.subnet} oifname != {bridge} masquerade")
    keep_gateway = f"ip daddr != {plan.gateway} " if plan.gateway else ""
    commands += [
        f"add rule {table} isolation iifname != {bridge} ip daddr {plan.subnet} {keep_gateway}drop",
        f"add rule {table} forward oifname {bridge} ct status dnat accept",
        f"add rule {table} forward oifname {bridge} ct state established,related accept",
        f"add rule {table} forward iifname {bridge} accept",
    ]
    return commands


class NftablesFirewall:
    """berth's own ``table ip berth[-<bridge>]``, driven through the ``nft`` command."""

    name = NFTABLES

    def __init__(self, plan: FirewallPlan, runner: Runner = run_command, nft: str = "nft") -> None:
        self.plan = plan
        self.run = runner
        self.nft = nft

    def _apply(self, commands: Sequence[str]) -> None:
        if commands:
            self.run([self.nft, "-f", "-"], "\n".join(commands) + "\n")

    def listing(self) -> Optional[List[ListedRule]]:
        """berth's rules, or None when the table does not exist."""
        try:
            text = self.run([self.nft, "-a", "list", "table", "ip", self.plan.nft_table], None)
        except CommandFailed as exc:
            if "No such file or directory" in exc.stderr:
                return None
            raise
        return parse_nft_listing(text)

    def _base_current(self, rules: Optional[List[ListedRule]]) -> bool:
        marker = f"{BASE_PREFIX}{self.plan.fingerprint}"
        return rules is not None and any(rule.comment == marker for rule in rules)

    def ensure(self, wanted: Dict[str, List[Dnat]], reconcile: bool = False) -> bool:
        """Make the base objects current; True when they were rebuilt, with the DNAT rules of *wanted*.

        A rebuild, or *reconcile*, also checks Docker's DOCKER-USER chain.
        """
        rebuilt = not self._base_current(self.listing())
        if rebuilt:
            self._apply(nft_base_commands(self.plan) + self._dnat_commands(wanted))
        if rebuilt or reconcile:
            DockerCoexistence(self.plan, self.run).sync(True)
        return rebuilt

    def _dnat_commands(self, wanted: Dict[str, List[Dnat]]) -> List[str]:
        return [nft_dnat_rule(self.plan, owner, dnat) for owner in sorted(wanted) for dnat in wanted[owner]]

    def add(self, owner: str, dnats: Sequence[Dnat]) -> None:
        self._apply(self._dnat_commands({owner: list(dnats)}))

    def remove(self, owners: Iterable[str]) -> int:
        """Delete the DNAT rules of *owners*; how many rules went."""
        comments = {owner_comment(owner) for owner in owners}
        rules = self.listing() or []
        doomed = [rule for rule in rules if rule.comment in comments]
        table = f"ip {self.plan.nft_table}"
        self._apply([f"delete rule {table} {rule.chain} handle {rule.handle}" for rule in doomed])
        return len(doomed)

    def owners(self) -> Set[str]:
        return {
            rule.comment[len(OWNER_PREFIX) :] for rule in self.listing() or [] if rule.comment.startswith(OWNER_PREFIX)
        }

    def present(self) -> bool:
        return self.listing() is not None

    def remove_all(self) -> None:
        table = f"ip {self.plan.nft_table}"
        if self.present():
            self._apply([f"delete table {table}"])
        DockerCoexistence(self.plan, self.run).sync(False)


# --------------------------------------------------------------------- iptables


_SAVE_RULE = re.compile(r"^-A (\S+) ")
_SAVE_COMMENT = re.compile(r'--comment (?:"([^"]*)"|(\S+))')


@dataclass
class SavedTables:
    """``iptables-save`` output: rules (``text`` is the ``-A`` line) and declared chains, by table."""

    rules: Dict[str, List[ListedRule]]
    chains: Dict[str, Set[str]]


def parse_iptables_save(text: str) -> SavedTables:
    saved = SavedTables({}, {})
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            saved.rules.setdefault(table, [])
            saved.chains.setdefault(table, set())
            continue
        if not table:
            continue
        if line.startswith(":"):
            saved.chains[table].add(line[1:].split()[0])
            continue
        match = _SAVE_RULE.match(line)
        if match:
            comment = _SAVE_COMMENT.search(line)
            value = (comment.group(1) or comment.group(2)) if comment else ""
            saved.rules[table].append(ListedRule(match.group(1), value, "", line.strip()))
    return saved


def iptables_dnat_rule(plan: FirewallPlan, owner: str, dnat: Dnat) -> str:
    match = f"-d {dnat.host_ip}/32 " if dnat.host_ip else ""
    return (
        f"-A {plan.dnat_chain} {match}-p {dnat.protocol} -m {dnat.protocol} --dport {dnat.host_port} "
        f'-m comment --comment "{owner_comment(owner)}" -j DNAT --to-destination {dnat.dest_ip}:{dnat.dest_port}'
    )


def iptables_base_rules(plan: FirewallPlan) -> Dict[str, List[str]]:
    """Jumps from the built-in chains and the fixed rules of berth's chains, by table."""
    base = f'-m comment --comment "{BASE_PREFIX}{plan.fingerprint}"'
    ours = '-m comment --comment "berth"'
    bridge = plan.bridge
    nat = [
        f"-A PREROUTING -m addrtype --dst-type LOCAL {base} -j {plan.dnat_chain}",
        f"-A OUTPUT -m addrtype --dst-type LOCAL {ours} -j {plan.dnat_chain}",
        f"-A POSTROUTING {ours} -j {plan.snat_chain}",
        f"-A {plan.snat_chain} -s 127.0.0.0/8 -o {bridge} -j MASQUERADE",
        f"-A {plan.snat_chain} -s {plan.subnet} -o {bridge} -m conntrack --ctstate DNAT -j MASQUERADE",
    ]
    if plan.masquerade:
        nat.append(f"-A {plan.snat_chain} -s {plan.subnet} ! -o {bridge} -j MASQUERADE")
    raw = [f"-A PREROUTING {base} -j {plan.raw_chain}"]
    if plan.gateway:
        raw.append(f"-A {plan.raw_chain} -d {plan.gateway}/32 -j RETURN")
    raw.append(f"-A {plan.raw_chain} -d {plan.subnet} ! -i {bridge} -j DROP")
    filter_rules = [
        f"-I FORWARD 1 {base} -j {plan.forward_chain}",
        f"-A {plan.forward_chain} -o {bridge} -m conntrack --ctstate DNAT -j ACCEPT",
        f"-A {plan.forward_chain} -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {plan.forward_chain} -i {bridge} -j ACCEPT",
    ]
    return {"nat": nat, "filter": filter_rules, "raw": raw}


def _restore_script(sections: Dict[str, List[str]]) -> str:
    lines: List[str] = []
    for table, rules in sections.items():
        if rules:
            lines += [f"*{table}", *rules, "COMMIT"]
    return "\n".join(lines) + "\n"


class IptablesFirewall:
    """berth's chains in iptables' nat and filter tables, driven by iptables-save/-restore."""

    name = IPTABLES

    def __init__(self, plan: FirewallPlan, runner: Runner = run_command, prefix: str = "iptables") -> None:
        self.plan = plan
        self.run = runner
        self.save_cmd = f"{prefix}-save"
        self.restore_cmd = f"{prefix}-restore"

    @property
    def chains(self) -> Dict[str, Tuple[str, ...]]:
        return {
            "nat": (self.plan.dnat_chain, self.plan.snat_chain),
            "filter": (self.plan.forward_chain,),
            "raw": (self.plan.raw_chain,),
        }

    def _apply(self, sections: Dict[str, List[str]]) -> None:
        if any(sections.values()):
            self.run([self.restore_cmd, "-w", "--noflush"], _restore_script(sections))

    def listing(self, tables: Sequence[str] = ()) -> SavedTables:
        """berth's tables as iptables-save prints them; all of them in one call when *tables* is empty.

        A table nothing has used yet is absent from a plain ``iptables-save``;
        it simply has no berth chains.
        """
        if tables:
            saved = SavedTables({}, {})
            for table in tables:
                part = parse_iptables_save(self.run([self.save_cmd, "-t", table], None))
                saved.rules.update(part.rules)
                saved.chains.update(part.chains)
            return saved
        return parse_iptables_save(self.run([self.save_cmd], None))

    def _jumps(self, saved: SavedTables) -> Dict[str, List[ListedRule]]:
        """Rules in other chains that jump into berth's chains."""
        return {
            table: [
                rule
                for rule in saved.rules.get(table, [])
                if rule.chain not in chains and any(rule.text.endswith(f"-j {chain}") for chain in chains)
            ]
            for table, chains in self.chains.items()
        }

    def _base_current(self, saved: SavedTables) -> bool:
        marker = f"{BASE_PREFIX}{self.plan.fingerprint}"
        jumps = self._jumps(saved)
        return all(any(rule.comment == marker for rule in jumps[table]) for table in self.chains)

    def _teardown_lines(self, saved: SavedTables) -> Dict[str, List[str]]:
        """Delete the jumps into berth's chains, by their exact spec."""
        return {table: ["-D" + rule.text[2:] for rule in rules] for table, rules in self._jumps(saved).items()}

    def ensure(self, wanted: Dict[str, List[Dnat]], reconcile: bool = False) -> bool:
        """Make the base objects current; True when they were rebuilt, with the DNAT rules of *wanted*.

        A rebuild, or *reconcile*, also checks Docker's DOCKER-USER chain.
        """
        saved = self.listing()
        if self._base_current(saved):
            if reconcile:
                DockerCoexistence(self.plan, self.run).sync(True)
            return False
        sections = self._teardown_lines(saved)
        base = iptables_base_rules(self.plan)
        for table, chains in self.chains.items():
            sections[table] += [f":{chain} - [0:0]" for chain in chains] + base[table]
        sections["nat"] += [
            iptables_dnat_rule(self.plan, owner, dnat) for owner in sorted(wanted) for dnat in wanted[owner]
        ]
        self._apply(sections)
        DockerCoexistence(self.plan, self.run).sync(True)
        return True

    def add(self, owner: str, dnats: Sequence[Dnat]) -> None:
        self._apply({"nat": [iptables_dnat_rule(self.plan, owner, dnat) for dnat in dnats]})

    def _owned(self) -> List[ListedRule]:
        saved = self.listing(("nat",))
        return [
            rule
            for rule in saved.rules.get("nat", [])
            if rule.chain == self.plan.dnat_chain and rule.comment.startswith(OWNER_PREFIX)
        ]

    def remove(self, owners: Iterable[str]) -> int:
        comments = {owner_comment(owner) for owner in owners}
        doomed = [rule for rule in self._owned() if rule.comment in comments]
        self._apply({"nat": ["-D" + rule.text[2:] for rule in doomed]})
        return len(doomed)

    def owners(self) -> Set[str]:
        return {rule.comment[len(OWNER_PREFIX) :] for rule in self._owned()}

    def present(self) -> bool:
        saved = self.listing()
        return any(
            set(chains) & saved.chains.get(table, set()) or self._jumps(saved)[table]
            for table, chains in self.chains.items()
        )

    def remove_all(self) -> None:
        saved = self.listing()
        sections = self._teardown_lines(saved)
        for table, chains in self.chains.items():
            declared = [chain for chain in chains if chain in saved.chains.get(table, set())]
            sections[table] += [f":{chain} - [0:0]" for chain in declared] + [f"-X {chain}" for chain in declared]
        self._apply(sections)
        DockerCoexistence(self.plan, self.run).sync(False)


DOCKER_USER = "DOCKER-USER"


def docker_user_rules(plan: FirewallPlan) -> List[str]:
    marker = f'-m comment --comment "{BASE_PREFIX}{plan.fingerprint}"'
    return [
        f"-I {DOCKER_USER} -i {plan.bridge} {marker} -j ACCEPT",
        f"-I {DOCKER_USER} -o {plan.bridge} {marker} -j ACCEPT",
    ]


class DockerCoexistence:
    """Accept the bridge's traffic in Docker's DOCKER-USER chain when dockerd runs on the same host.

    dockerd sets the iptables FORWARD policy to DROP; a drop in any base chain
    wins over berth's own accept, so without these two rules containers lose
    outbound traffic, remote clients and (with br_netfilter) each other.
    DOCKER-USER is the chain Docker keeps for other software's rules.
    """

    def __init__(
        self, plan: FirewallPlan, runner: Runner, which: Callable[[str], Optional[str]] = shutil.which
    ) -> None:
        self.plan = plan
        self.run = runner
        self.available = bool(which("iptables-save") and which("iptables-restore"))

    def sync(self, wanted: bool) -> None:
        if not self.available:
            return
        try:
            saved = parse_iptables_save(self.run(["iptables-save", "-t", "filter"], None))
        except CommandFailed:
            return
        if DOCKER_USER not in saved.chains.get("filter", set()):
            return
        bridge = self.plan.bridge
        ours = [
            rule
            for rule in saved.rules.get("filter", [])
            if rule.chain == DOCKER_USER
            and rule.comment.startswith(BASE_PREFIX)
            and (f"-i {bridge} " in rule.text or f"-o {bridge} " in rule.text)
        ]
        current = [rule for rule in ours if rule.comment == f"{BASE_PREFIX}{self.plan.fingerprint}"]
        if (wanted and len(current) == len(ours) == 2) or (not wanted and not ours):
            return
        lines = ["-D" + rule.text[2:] for rule in ours] + (docker_user_rules(self.plan) if wanted else [])
        self.run(["iptables-restore", "-w", "--noflush"], _restore_script({"filter": lines}))


class Firewall(Protocol):
    """What the network stage needs from a backend."""

    name: str

    def ensure(self, wanted: Dict[str, List[Dnat]], reconcile: bool = False) -> bool: ...

    def add(self, owner: str, dnats: Sequence[Dnat]) -> None: ...

    def remove(self, owners: Iterable[str]) -> int: ...

    def owners(self) -> Set[str]: ...

    def present(self) -> bool: ...

    def remove_all(self) -> None: ...


class NoFirewall:
    """No netfilter at all: published ports go through the userland proxy, no masquerade."""

    name = NONE

    def __init__(self, plan: FirewallPlan) -> None:
        self.plan = plan

    def ensure(self, wanted: Dict[str, List[Dnat]], reconcile: bool = False) -> bool:
        return False

    def add(self, owner: str, dnats: Sequence[Dnat]) -> None:
        return None

    def remove(self, owners: Iterable[str]) -> int:
        return 0

    def owners(self) -> Set[str]:
        return set()

    def present(self) -> bool:
        return False

    def remove_all(self) -> None:
        return None


def select_backend(setting: str, which: Callable[[str], Optional[str]] = shutil.which) -> str:
    """The backend ``firewall-backend`` asks for: auto picks nftables, then iptables, then none."""
    have_nft = bool(which("nft"))
    have_iptables = bool(which("iptables-restore") and which("iptables-save"))
    if setting == NFTABLES and not have_nft:
        raise NetworkError(
            "firewall-backend is 'nftables' but the nft command is not installed; "
            "install the nftables package or set firewall-backend to 'auto'"
        )
    if setting == IPTABLES and not have_iptables:
        raise NetworkError(
            "firewall-backend is 'iptables' but iptables-save/iptables-restore are not installed; "
            "install iptables or set firewall-backend to 'auto'"
        )
    if setting in (NFTABLES, IPTABLES, NONE):
        return setting
    if have_nft:
        return NFTABLES
    if have_iptables:
        return IPTABLES
    return NONE


def firewall_for(backend: str, plan: FirewallPlan, runner: Runner = run_command) -> "Firewall":
    """The firewall object of a backend name (as recorded in a lease)."""
    if backend == NFTABLES:
        return NftablesFirewall(plan, runner)
    if backend == IPTABLES:
        return IptablesFirewall(plan, runner)
    return NoFirewall(plan)
