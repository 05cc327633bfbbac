"""Run collection modules the way Ansible runs them: ansible-playbook against localhost.

Each call writes a small playbook whose tasks register their results, and a
last task that saves all of them as JSON; the caller gets the registered
results (``changed``, ``diff``, ``msg``, return values) in task order.  The
interpreter is set explicitly (discovery can pick a broken pyenv shim on
these machines) and the collection is found through the checkout's
``.cache/collections`` link that tests/conftest.py maintains.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


class Task(dict):
    """One task: ``Task("berth.containers.daemon_json", {...}, check=True)``; *environment* is the task keyword."""

    def __init__(
        self,
        module: str,
        args: Optional[Dict[str, Any]] = None,
        check: bool = False,
        environment: Optional[Dict[str, str]] = None,
    ) -> None:
        super().__init__(module=module, args=args or {}, check=check, environment=environment or {})


def _collections_path() -> str:
    link = os.path.join(CHECKOUT, ".cache", "collections", "ansible_collections", "berth", "containers")
    if not os.path.islink(link) and not os.path.isdir(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(CHECKOUT, link)
    return os.path.join(CHECKOUT, ".cache", "collections")


def _environment(work: str) -> Dict[str, str]:
    config = os.path.join(work, "ansible.cfg")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("[defaults]\n")
    return dict(
        os.environ,
        ANSIBLE_CONFIG=config,
        ANSIBLE_COLLECTIONS_PATH=_collections_path(),
        ANSIBLE_LOCAL_TEMP=os.path.join(work, "local"),
        ANSIBLE_REMOTE_TEMP=os.path.join(work, "remote"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )


def _playbook(work: str, playbook: str, extra_args: List[str], timeout: float) -> "subprocess.CompletedProcess[str]":
    argv = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    return subprocess.run(
        [*argv, *extra_args, playbook],
        env=_environment(work),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class PlayRun:
    """The outcome of a play: exit status, output and the variables it saved."""

    def __init__(self, returncode: int, stdout: str, saved: Dict[str, Any]) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.saved = saved

    def recap(self) -> Dict[str, int]:
        """The PLAY RECAP counters of localhost (ok, changed, failed, skipped...)."""
        for line in self.stdout.splitlines():
            if line.startswith("localhost") and "ok=" in line:
                return {key: int(value) for key, value in (part.split("=") for part in line.split(":", 1)[1].split())}
        raise AssertionError(f"no PLAY RECAP in:\n{self.stdout[-3000:]}")


def run_role(role: str, variables: Dict[str, Any], check: bool = False, save: Optional[List[str]] = None,
             timeout: float = 600) -> PlayRun:  # fmt: skip
    """Apply *role* to localhost (``--check --diff`` with *check*) and save the host variables named in *save*."""
    with tempfile.TemporaryDirectory(prefix="berth-role-") as work:
        out = os.path.join(work, "saved.json")
        saved_vars = "{" + ", ".join(f"{name!r}: {name} | default(None)" for name in save or []) + "}"
        play = {
            "hosts": "localhost",
            "gather_facts": True,
            "vars": variables,
            "roles": [role],
            "post_tasks": [
                {
                    "name": "save variables",
                    "ansible.builtin.copy": {
                        "content": "{{ " + saved_vars + " | to_json }}",
                        "dest": out,
                        "mode": "0600",
                    },
                    "check_mode": False,
                }
            ],
        }
        playbook = os.path.join(work, "play.yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            json.dump([play], handle)
        completed = _playbook(work, playbook, ["--check", "--diff"] if check else [], timeout)
        saved: Dict[str, Any] = {}
        if os.path.exists(out):
            with open(out, encoding="utf-8") as handle:
                saved = json.load(handle)
        return PlayRun(completed.returncode, completed.stdout + completed.stderr, saved)


def run_tasks(tasks: List[Task], timeout: float = 300) -> List[Dict[str, Any]]:
    """Run *tasks* in one play on localhost; return their registered results."""
    return run_tasks_with_output(tasks, timeout)[0]


def run_tasks_with_output(
    tasks: List[Task], timeout: float = 300, verbosity: int = 0
) -> Tuple[List[Dict[str, Any]], str]:
    """:func:`run_tasks`, also returning everything ansible-playbook printed (at ``-v`` * *verbosity*)."""
    with tempfile.TemporaryDirectory(prefix="berth-play-") as work:
        out = os.path.join(work, "results.json")
        play_tasks: List[Dict[str, Any]] = []
        for index, task in enumerate(tasks):
            play_tasks.append(
                {
                    "name": f"task {index}",
                    task["module"]: task["args"],
                    "check_mode": task["check"],
                    "diff": True,
                    "register": f"result_{index}",
                    "ignore_errors": True,
                    **({"environment": task["environment"]} if task.get("environment") else {}),
                }
            )
        results = "[" + ", ".join(f"result_{index}" for index in range(len(tasks))) + "]"
        play_tasks.append(
            {
                "name": "save the results",
                "ansible.builtin.copy": {"content": "{{ " + results + " | to_json }}", "dest": out, "mode": "0600"},
                "check_mode": False,
            }
        )
        playbook = os.path.join(work, "play.yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            json.dump([{"hosts": "localhost", "gather_facts": False, "tasks": play_tasks}], handle)
        completed = _playbook(work, playbook, ["-" + "v" * verbosity] if verbosity else [], timeout)
        if completed.returncode != 0 or not os.path.exists(out):
            raise AssertionError(
                f"ansible-playbook failed ({completed.returncode}):\n"
                f"{completed.stdout[-4000:]}\n{completed.stderr[-2000:]}"
            )
        with open(out, encoding="utf-8") as handle:
            return json.load(handle), completed.stdout + completed.stderr


def run_module(module: str, args: Optional[Dict[str, Any]] = None, check: bool = False) -> Dict[str, Any]:
    """Run one module once; return its registered result."""
    return run_tasks([Task(module, args, check)])[0]


def rhythm(module: str, args: Dict[str, Any]) -> List[Dict[str, Any]]:
    """check mode -> run -> check mode -> run, in one play."""
    return run_tasks([Task(module, args, check) for check in (True, False, True, False)])


def warnings_of(result: Dict[str, Any]) -> List[str]:
    """Warning texts of a registered result (structured in ansible-core 2.19)."""
    found = []
    for warning in result.get("warnings", []):
        found.append(warning["event"]["msg"] if isinstance(warning, dict) and "event" in warning else str(warning))
    return found
