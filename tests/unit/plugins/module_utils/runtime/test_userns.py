"""The ``userns`` option: its canonical form, subordinate id ranges, and what it refuses."""

import os
from pathlib import Path

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import spec, userns
from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Container
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        (None, "host"),
        ("", "host"),
        ("host", "host"),
        ("auto", "auto"),
        ("100000", "100000:100000:65536"),
        ("100000:200000", "100000:200000:65536"),
        (" 100000:200000:1000 ", "100000:200000:1000"),
        (100000, "100000:100000:65536"),
    ],
)
def test_values_have_one_canonical_form(value, canonical: str) -> None:
    assert userns.normalize(value) == canonical


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "maps the container's root to the host's root"),
        ("100000:0", "maps the container's root to the host's root"),
        ("1:1:0", "at least one id"),
        (f"{2**32 - 10}:1:65536", "beyond the largest id"),
        ("private", "is not host, auto or HOST_UID"),
        ("1:2:3:4", "is not host, auto or HOST_UID"),
        ("-5", "is not host, auto or HOST_UID"),
    ],
)
def test_bad_values_are_refused_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        userns.normalize(value)


def test_resolve_gives_the_id_map() -> None:
    assert userns.resolve("host") is None
    idmap = userns.resolve("100000:200000:65536")
    assert idmap == userns.IdMap(100000, 200000, 65536)
    assert (idmap.host_uid(33), idmap.host_gid(5)) == (100033, 200005)


def test_auto_takes_the_first_large_enough_range_of_berth(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subgid = tmp_path / "subgid"
    subuid.write_text("alice:100000:65536\nberth:165536:1000\nberth:231072:65536\nberth:400000:65536\n")
    subgid.write_text("berth:500000:131072\n")
    assert userns.resolve("auto", str(subuid), str(subgid)) == userns.IdMap(231072, 500000, 65536)


def test_auto_without_a_range_says_how_to_add_one(tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:65536\n")
    with pytest.raises(InvalidArgument, match='add a line "berth:100000:65536"'):
        userns.resolve("auto", str(subuid), str(subuid))
    with pytest.raises(InvalidArgument, match="does not exist"):
        userns.resolve("auto", str(tmp_path / "missing"), str(subuid))


def test_spec_refuses_privileged_and_systemd_in_a_user_namespace() -> None:
    assert spec.normalize({"image": "busybox", "userns": "100000"})["userns"] == "100000:100000:65536"
    with pytest.raises(InvalidArgument, match="cannot be combined with privileged"):
        spec.normalize({"image": "busybox", "userns": "auto", "privileged": True})
    systemd = spec.normalize({"image": "debian", "userns": "auto", "command": ["/sbin/init"]})
    with pytest.raises(InvalidArgument, match="cannot run systemd"):
        spec.effective(systemd, {"config": {}})


def test_a_container_stored_by_an_older_berth_gets_the_new_defaults() -> None:
    stored = spec.normalize({"image": "busybox"})
    del stored["userns"]
    container = Container("c" * 64, os.devnull, {"spec": stored}, {})
    assert container.spec["userns"] == "host"


def test_info_status_tells_whether_auto_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ranges = tmp_path / "subids"
    ranges.write_text("nobody:1:2\n")
    monkeypatch.setattr(userns, "SUBUID_FILE", str(ranges))
    monkeypatch.setattr(userns, "SUBGID_FILE", str(ranges))
    assert userns.status().startswith('auto unavailable (no "berth" range')
    ranges.write_text("berth:300000:65536\n")
    assert userns.status().startswith("auto maps root to 300000:300000 (65536 ids")


def test_the_map_of_a_process_is_read_from_proc() -> None:
    assert userns.IdMap.of_process(os.getpid()) == userns.IdMap(0, 0, 2**32 - 1)
