"""Run Ansible against berth containers through the ``berth.containers.berth`` connection plugin.

``run_play`` writes an inventory of containers (``ansible_connection:
berth.containers.berth``, the runtime's config and the container's
``python3`` set explicitly) and a playbook into a work directory, runs the
checkout's ``ansible-playbook`` with the collection found through the
``.cache/collections`` link (see support/ansible_run.py), and returns the exit
status, the output and the PLAY RECAP per host.

``connection_probe`` drives the plugin directly, outside any play, in a fresh
interpreter (``support/connection_probe.py``): the plugin's put/fetch/exec as
Ansible's action plugins call them, for tests that must aim at one method.
"""

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence

from . import ansible_run

BIN = os.path.dirname(sys.executable)
CONTAINER_PYTHON = "/usr/bin/python3"
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "connection_probe.py")


class PlayResult:
    """Exit status and output of ansible-playbook, and the PLAY RECAP counters per host."""

    def __init__(self, returncode: int, output: str) -> None:
        self.returncode = returncode
        self.output = output

    def recap(self, host: str) -> Dict[str, int]:
        for line in self.output.splitlines():
            if line.startswith(host + " ") and "ok=" in line:
                return {key: int(value) for key, value in (part.split("=") for part in line.split(":", 1)[1].split())}
        raise AssertionError(f"no PLAY RECAP line for {host} in:\n{self.output[-4000:]}")

    def __repr__(self) -> str:
        return f"PlayResult({self.returncode}, ...{self.output[-3000:]})"


def container_host(name: str, config_path: str, **variables: Any) -> Dict[str, Any]:
    """Inventory variables of a berth container (*variables* added or overriding)."""
    return {
        "ansible_connection": "berth.containers.berth",
        "ansible_host": name,
        "ansible_berth_config": config_path,
        "ansible_python_interpreter": CONTAINER_PYTHON,
        **variables,
    }


def environment(work: str, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """What ansible (and testinfra's ansible runner) needs to find the collection and stay out of ~/.ansible."""
    config = os.path.join(work, "ansible.cfg")
    if not os.path.exists(config):
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("[defaults]\nhost_key_checking = False\nretry_files_enabled = False\n")
    return {
        **os.environ,
        "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": config,
        "ANSIBLE_COLLECTIONS_PATH": ansible_run._collections_path(),
        "ANSIBLE_LOCAL_TEMP": os.path.join(work, "local-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        **(extra or {}),
    }


def write_inventory(work: str, hosts: Dict[str, Dict[str, Any]]) -> str:
    path = os.path.join(work, "inventory.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"all": {"hosts": hosts}}, handle)
    return path


def run_play(
    work: str,
    plays: List[Dict[str, Any]],
    hosts: Dict[str, Dict[str, Any]],
    extra_args: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
    timeout: float = 600,
) -> PlayResult:
    """Run *plays* (JSON-able playbook) against *hosts* (inventory name -> variables) from *work*."""
    os.makedirs(work, exist_ok=True)
    inventory = write_inventory(work, hosts)
    playbook = os.path.join(work, "play.yml")
    with open(playbook, "w", encoding="utf-8") as handle:
        json.dump(plays, handle)
    completed = subprocess.run(
        [os.path.join(BIN, "ansible-playbook"), "-i", inventory, *extra_args, playbook],
        cwd=work,
        env=environment(work, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return PlayResult(completed.returncode, completed.stdout + completed.stderr)


def connection_probe(
    work: str, variables: Dict[str, Any], steps: List[Dict[str, Any]], timeout: float = 300
) -> List[Dict[str, Any]]:
    """Run *steps* (``{"op": "exec"|"put"|"fetch", ...}``) through the plugin; one outcome per step.

    Each outcome has ``ok`` and either the method's result (``rc``/``stdout``/
    ``stderr`` for exec) or ``error`` (the exception's class and message).
    """
    os.makedirs(work, exist_ok=True)
    request = os.path.join(work, "probe.json")
    with open(request, "w", encoding="utf-8") as handle:
        json.dump({"variables": variables, "steps": steps}, handle)
    completed = subprocess.run(
        [sys.executable, PROBE, request],
        cwd=work,
        env=environment(work),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"connection probe failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout)
