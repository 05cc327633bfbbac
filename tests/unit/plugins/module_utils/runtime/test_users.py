"""User resolution from a container's /etc/passwd and /etc/group, parsed by hand (R11, R12)."""

import os

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import users
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ContainerError

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
broken line without fields
bad:x:notanumber:1::/:/bin/sh
app:x:1000:1000:App User:/home/app:/bin/sh
nohome:x:1001:1001
dup:x:1000:5::/other:/bin/sh
"""
GROUP = b"""root:x:0:
adm:x:4:app,daemon
staff:x:50:app
app:x:1000:
wheel:x:10:root
weird:x:-3:app
"""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", users.ExecUser(0, 0, (10,), "/root")),
        ("root", users.ExecUser(0, 0, (10,), "/root")),
        ("app", users.ExecUser(1000, 1000, (4, 50), "/home/app")),
        ("1000", users.ExecUser(1000, 1000, (4, 50), "/home/app")),
        ("app:staff", users.ExecUser(1000, 50, (4, 50), "/home/app")),
        ("app:77", users.ExecUser(1000, 77, (4, 50), "/home/app")),
        ("1000:0", users.ExecUser(1000, 0, (4, 50), "/home/app")),
        ("4242", users.ExecUser(4242, 0, (), "/")),
        ("4242:4242", users.ExecUser(4242, 4242, (), "/")),
        ("nohome", users.ExecUser(1001, 1001, (), "/")),
        ("daemon", users.ExecUser(1, 1, (4,), "/usr/sbin")),
    ],
)
def test_resolve(spec, expected):
    assert users.resolve(spec, PASSWD, GROUP) == expected


def test_supplementary_groups_come_from_the_container_group_file():
    """R11: uid 1000 listed in adm gets adm; nothing of the host's groups."""
    assert users.resolve("1000", PASSWD, GROUP).groups == (4, 50)


def test_group_add_by_name_and_number():
    resolved = users.resolve("app", PASSWD, GROUP, extra_groups=["wheel", "123"])
    assert resolved.groups == (4, 50, 10, 123)


@pytest.mark.parametrize("spec", ["2147483648", "4294967296", "-1", "99999999999999999999", "+5", " 5", "0x10", "١٢"])
def test_out_of_range_or_malformed_ids_are_refused(spec):
    """R12: ids beyond int32, negative or non-decimal never become uid 0."""
    with pytest.raises(ContainerError):
        users.resolve(spec, PASSWD, GROUP)


@pytest.mark.parametrize("spec", ["app:2147483648", "app:-1", "app:nosuchgroup", "app:"])
def test_bad_groups_are_refused(spec):
    with pytest.raises(ContainerError):
        users.resolve(spec, PASSWD, GROUP)


def test_unknown_name_is_an_error_naming_the_user():
    with pytest.raises(ContainerError, match="unable to find user ghost"):
        users.resolve("ghost", PASSWD, GROUP)


def test_largest_allowed_id():
    assert users.resolve("2147483647", None, None) == users.ExecUser(2147483647, 0, (), "/")


def test_missing_files_mean_root_defaults():
    assert users.resolve("", None, None) == users.ExecUser(0, 0, (), "/")


def test_parsers_skip_malformed_lines():
    names = [entry.name for entry in users.parse_passwd(PASSWD)]
    assert names == ["root", "daemon", "app", "nohome", "dup"]
    groups = {entry.name: entry.members for entry in users.parse_group(GROUP)}
    assert "weird" not in groups
    assert groups["adm"] == ("app", "daemon")


def test_first_passwd_entry_wins():
    assert users.resolve("1000", PASSWD, GROUP).home == "/home/app"


def test_read_bounded_refuses_huge_files(tmp_path):
    """R12 / CVE-2026-47262: a huge /etc/group is not parsed."""
    big = tmp_path / "group"
    big.write_bytes(b"g:x:1:" + b"a," * (users.MAX_FILE_BYTES // 2) + b"\n")
    with pytest.raises(ContainerError, match="larger than"):
        users.read_bounded(str(big))


def test_read_bounded_refuses_fifos_without_blocking(tmp_path):
    fifo = tmp_path / "passwd"
    os.mkfifo(fifo)
    with pytest.raises(ContainerError, match="not a regular file"):
        users.read_bounded(str(fifo))


def test_read_bounded_missing_is_none(tmp_path):
    assert users.read_bounded(str(tmp_path / "nope")) is None
    assert users.read_bounded(str(tmp_path / "nodir" / "passwd")) is None


def test_resolve_in_container_reads_files(tmp_path):
    (tmp_path / "passwd").write_bytes(PASSWD)
    (tmp_path / "group").write_bytes(GROUP)
    assert users.resolve_in_container("app", etc=str(tmp_path)).groups == (4, 50)


def test_too_many_groups(monkeypatch):
    monkeypatch.setattr(users, "MAX_GROUPS", 3)
    group = b"".join(b"g%d:x:%d:app\n" % (number, number + 100) for number in range(5))
    with pytest.raises(ContainerError, match="more than 3"):
        users.resolve("app", PASSWD, group)
