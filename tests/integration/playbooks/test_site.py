"""The walkthrough through Ansible: ``berth.containers.site`` on localhost, like ``make demo``.

The inventory is the demo's (playbooks/inventory/localhost.yml) with the
settings a test needs instead of the host's: an isolated BerthEnv
configuration (own data root, bridge, subnet), a free port instead of 88, the
berth command installed under a temporary prefix.  The play runs twice: the
first run changes the host, the second changes nothing; the page answers.
"""

import json
import os
import re
import subprocess
import sys
from typing import Any, Dict, Iterator

import pytest
import yaml
from support.berth_env import BerthEnv
from support.berth_net import wait_http
from support.procs import free_port
from support.registry import Registry
from support.site_play import environment, run_playbook

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def env(mirror: Registry) -> Iterator[BerthEnv]:
    made = BerthEnv()
    os.unlink(made.config_path)  # the runtime role writes it
    try:
        yield made
    finally:
        if not os.path.exists(made.config_path):
            made.write()  # clean-up must never fall back to the host's default configuration
    assert made.destroy() == []


def _inventory(path: str, hosts_vars: Dict[str, Any]) -> str:
    """The demo's inventory with *hosts_vars* over its group variables."""
    with open(os.path.join(CHECKOUT, "playbooks", "inventory", "localhost.yml"), encoding="utf-8") as handle:
        inventory = yaml.safe_load(handle)
    group = inventory["all"]["children"]["berth_hosts"]
    group["hosts"]["localhost"]["ansible_python_interpreter"] = sys.executable
    group["vars"]["berth_registry_mirrors"] = []  # not the demo registry's
    group["vars"].update(hosts_vars)
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle)
    return path


def test_the_site_playbook_runs_nginx_then_changes_nothing(env: BerthEnv, mirror: Registry, tmp_path) -> None:
    port = free_port()
    prefix = tmp_path / "prefix"
    daemon_options = {key: value for key, value in env.settings.items() if key != "registry-mirrors"}
    inventory = _inventory(
        str(tmp_path / "inventory.yml"),
        {
            "berth_config_path": env.config_path,
            "berth_registry_mirrors": [mirror.url],
            "berth_daemon_options": daemon_options,
            "berth_install_cli": True,
            "berth_cli_prefix": str(prefix),
            "berth_images": ["busybox"],
            "berth_containers": [{"name": "web", "image": "nginx", "published_ports": [f"{port}:80"]}],
        },
    )
    first = run_playbook(str(tmp_path), inventory)
    assert first.returncode == 0, first.stdout[-6000:]
    assert first.recap()["changed"] > 0
    assert first.recap()["failed"] == 0
    status, body = wait_http(port)
    assert status == 200
    assert "<title>Welcome to nginx!</title>" in body

    with open(env.config_path, encoding="utf-8") as handle:
        written = json.load(handle)
    assert written["registry-mirrors"] == [mirror.url]
    assert written["bridge"] == env.settings["bridge"]

    cli = [str(prefix / "bin" / "berth"), "--config", env.config_path]
    assert os.readlink(prefix / "lib" / "berth" / "python") == sys.executable
    ps = subprocess.run([*cli, "ps"], capture_output=True, text=True, check=True).stdout
    row = next(line for line in ps.splitlines() if line.endswith(" web"))
    assert f"0.0.0.0:{port}->80/tcp" in row
    logs = subprocess.run([*cli, "logs", "web"], capture_output=True, text=True, check=True).stdout
    assert re.search(r'"GET / HTTP/1\.1" 200', logs)
    images = subprocess.run([*cli, "images"], capture_output=True, text=True, check=True).stdout
    assert {"nginx", "busybox"} <= {line.split()[0] for line in images.splitlines()[1:]}

    second = run_playbook(str(tmp_path), inventory)
    assert second.returncode == 0, second.stdout[-6000:]
    assert second.recap()["changed"] == 0, second.stdout[-6000:]
    checked = run_playbook(str(tmp_path), inventory, "berth.containers.site", "--check", "--diff")
    assert checked.returncode == 0, checked.stdout[-6000:]
    assert checked.recap()["changed"] == 0, checked.stdout[-6000:]
    assert wait_http(port)[0] == 200


def test_a_changed_port_recreates_the_container_and_a_dropped_mirror_leaves_daemon_json(
    env: BerthEnv, mirror: Registry, tmp_path
) -> None:
    first_port, second_port = free_port(), free_port()
    options = {key: value for key, value in env.settings.items() if key != "registry-mirrors"}
    settings = {
        "berth_config_path": env.config_path,
        "berth_registry_mirrors": [mirror.url],
        "berth_daemon_options": options,
        "berth_containers": [{"name": "web", "image": "nginx", "ports": [f"{first_port}:80"]}],
    }
    inventory = _inventory(str(tmp_path / "inventory.yml"), settings)
    assert run_playbook(str(tmp_path), inventory).returncode == 0
    wait_http(first_port)
    settings["berth_containers"][0]["ports"] = [f"{second_port}:80"]
    settings["berth_registry_mirrors"] = []
    _inventory(inventory, settings)
    again = run_playbook(str(tmp_path), inventory, "berth.containers.site", "--diff")
    assert again.returncode == 0, again.stdout[-6000:]
    assert again.recap()["changed"] == 2, again.stdout[-6000:]  # daemon.json and the container
    diff = [line.strip() for line in again.stdout.splitlines()]
    assert f'-        "{first_port}:80/tcp"' in diff, again.stdout[-6000:]
    assert f'+        "{second_port}:80/tcp"' in diff
    assert wait_http(second_port)[0] == 200
    with open(env.config_path, encoding="utf-8") as handle:
        assert "registry-mirrors" not in json.load(handle)


def test_unknown_container_options_fail_before_anything_changes(env: BerthEnv, tmp_path) -> None:
    inventory = _inventory(
        str(tmp_path / "inventory.yml"),
        {
            "berth_config_path": env.config_path,
            "berth_daemon_options": {key: value for key, value in env.settings.items() if key != "registry-mirrors"},
            "berth_containers": [{"name": "web", "image": "nginx", "publish": ["88:80"]}],
        },
    )
    result = run_playbook(str(tmp_path), inventory)
    assert result.returncode != 0
    assert "berth_containers entry web" in result.stdout
    assert "unknown here: publish" in result.stdout
    assert env.container_ids() == []


def test_a_python_without_the_libraries_is_named_with_the_fix(env: BerthEnv, tmp_path) -> None:
    probe = subprocess.run(["/usr/bin/python3", "-c", "import requests"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.fail("/usr/bin/python3 has requests here: this test needs a Python without it")
    inventory = _inventory(
        str(tmp_path / "inventory.yml"),
        {"berth_config_path": env.config_path, "berth_install_python_packages": False},
    )
    with open(inventory, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    data["all"]["children"]["berth_hosts"]["hosts"]["localhost"]["ansible_python_interpreter"] = "/usr/bin/python3"
    with open(inventory, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    result = run_playbook(str(tmp_path), inventory)
    assert result.returncode != 0
    assert "/usr/bin/python3 cannot import requests" in result.stdout
    assert "berth_install_python_packages is false" in result.stdout
    assert not os.path.exists(env.config_path), "the play stopped before writing the configuration"


def test_collection_roles_pass_every_module_option_through(tmp_path) -> None:
    """The containers role names every option (and alias) of the two modules, as their documentation has them."""
    with open(os.path.join(CHECKOUT, "roles", "containers", "vars", "main.yml"), encoding="utf-8") as handle:
        declared = yaml.safe_load(handle)
    with open(os.path.join(CHECKOUT, "roles", "containers", "tasks", "main.yml"), encoding="utf-8") as handle:
        tasks = {next(iter(key for key in task if "." in key and key != "ansible.builtin.assert"), ""): task
                 for task in yaml.safe_load(handle)}  # fmt: skip
    for module, listed in (("image", "_containers_image_options"), ("container", "_containers_container_options")):
        doc = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", "module", "--json",
             f"berth.containers.{module}"],
            env=environment(str(tmp_path)), capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        options = next(iter(json.loads(doc).values()))["doc"]["options"]
        names = set(options) | {alias for option in options.values() for alias in option.get("aliases", [])}
        assert set(declared[listed]) == names, module
        assert set(tasks[f"berth.containers.{module}"][f"berth.containers.{module}"]) == set(options), module
