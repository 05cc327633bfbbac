"""The berth connection plugin's pure parts: the remote user's name and its documented options."""

import yaml

from ansible_collections.berth.containers.plugins.connection import berth

PASSWD = b"root:x:0:0:root:/root:/bin/bash\nansible:x:1000:1000::/home/ansible:/bin/bash\n"


def test_an_empty_user_is_root() -> None:
    assert berth.configured_user_name("", PASSWD) == "root"
    assert berth.configured_user_name(":1000", PASSWD) == "root"


def test_a_name_is_used_as_it_is_and_a_group_is_dropped() -> None:
    assert berth.configured_user_name("www-data", None) == "www-data"
    assert berth.configured_user_name("ansible:adm", PASSWD) == "ansible"


def test_a_uid_is_named_from_the_containers_passwd() -> None:
    assert berth.configured_user_name("1000", PASSWD) == "ansible"
    assert berth.configured_user_name("1000:1000", PASSWD) == "ansible"


def test_a_uid_without_an_entry_stays_a_number() -> None:
    assert berth.configured_user_name("4242", PASSWD) == "4242"
    assert berth.configured_user_name("1000", None) == "1000"


def test_relative_paths_are_relative_to_the_containers_root() -> None:
    assert berth.Connection._in_container("tmp/x") == "/tmp/x"
    assert berth.Connection._in_container("/a/../b//c") == "/b/c"


def test_documented_options_and_the_variables_that_set_them() -> None:
    options = yaml.safe_load(berth.DOCUMENTATION)["options"]
    variables = {name: [var["name"] for var in spec.get("vars", [])] for name, spec in options.items()}
    assert "ansible_host" in variables["remote_addr"]
    assert "ansible_user" in variables["remote_user"]
    assert variables["berth_config"] == ["ansible_berth_config"]
    assert options["berth_config"]["env"] == [{"name": "BERTH_CONFIG"}]
    assert variables["berth_extra_env"] == ["ansible_berth_extra_env"]
    assert {"working_dir", "privileged", "timeout"} <= set(options)
    assert berth.Connection.has_pipelining is True
    assert berth.Connection.transport == "berth.containers.berth"
