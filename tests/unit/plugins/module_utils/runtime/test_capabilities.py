"""Docker's capability set and cap_add / cap_drop precedence."""

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import capabilities as caps
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument

EVERYTHING = (1 << len(caps.NAMES)) - 1
DOCKER = caps.mask_of(caps.DOCKER_DEFAULT)


def test_docker_default_is_the_14_capabilities_docker_reports():
    assert len(caps.DOCKER_DEFAULT) == 14
    assert DOCKER == 0xA80425FB


def test_numbers_match_the_kernel_header():
    assert caps.NUMBERS["CAP_SYS_ADMIN"] == 21
    assert caps.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.names_of(1 << 21 | 1) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], DOCKER),
        (["net_admin"], [], DOCKER | 1 << 12),
        (["CAP_NET_ADMIN"], ["NET_RAW"], (DOCKER | 1 << 12) & ~(1 << 13)),
        ([], ["ALL"], 0),
        (["chown"], ["all"], 1),
        (["ALL"], [], EVERYTHING),
        (["ALL"], ["SYS_ADMIN"], EVERYTHING & ~(1 << 21)),
        (["KILL"], ["KILL"], DOCKER),
    ],
)
def test_add_and_drop(add, drop, expected):
    assert caps.resolve(False, add, drop, EVERYTHING) == expected


def test_privileged_gets_what_the_caller_has():
    assert caps.resolve(True, [], ["ALL"], 0xFFF) == 0xFFF


def test_defaults_the_caller_lacks_are_left_out():
    available = DOCKER & ~(1 << 27)
    assert caps.resolve(False, [], [], available) == available


def test_adding_what_the_caller_lacks_is_an_error():
    with pytest.raises(InvalidArgument, match="CAP_SYS_RESOURCE is not available"):
        caps.resolve(False, ["SYS_RESOURCE"], [], EVERYTHING & ~(1 << 24))


@pytest.mark.parametrize("name", ["CAP_NOPE", "", "sys-admin"])
def test_unknown_names(name):
    with pytest.raises(InvalidArgument, match="unknown capability"):
        caps.resolve(False, [name], [], EVERYTHING)
