#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: container_exec
short_description: Run a command in a running container of the bundled runtime
version_added: 0.1.0
description:
  - Runs a command inside a running container of Berth's bundled runtime, like C(berth exec), and returns its exit
    code and output.
  - The command joins the container's namespaces and cgroup and gets the container's capabilities, seccomp filter and
    C(no_new_privs) setting (all of them with O(privileged=true)), and its environment with O(env) on top.
  - Like M(ansible.builtin.command), the task reports a change whenever the command ran, and fails when it exits
    with a non-zero code (use C(failed_when) and C(changed_when) to decide otherwise); the outcome is returned either
    way.
  - A command that does not exist in the container gives RV(rc=127) and one that cannot be executed RV(rc=126), with
    the reason in RV(stderr), as Docker reports them.
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.runtime
  - berth.containers.attributes
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
attributes:
  check_mode:
    support: partial
    details:
      - In check mode the command is never run. The task is reported as skipped (not changed) with a message saying that
        the command would have run, and in which container.
      - A container that does not exist or is not running does not fail a check-mode run (an earlier task of the same run
        may be the one that would create or start it); the message says what was found instead.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - The command runs each time; whether that changes anything is up to the command (see C(changed_when)).
options:
  container:
    description:
      - The name, ID, or a unique prefix of the ID of the container to run the command in. It must be running.
    type: str
    required: true
    aliases: [name]
  argv:
    description:
      - The command and its arguments, one list item each, used as they are (no shell, no quoting).
      - Exactly one of O(argv) and O(command) must be given.
    type: list
    elements: str
  command:
    description:
      - The command line, split into arguments the way a POSIX shell splits words (quotes, backslashes), but not run
        by a shell - no variables, pipes or redirections. Use O(argv) with V(sh), V(-c) and a script for those.
      - Exactly one of O(argv) and O(command) must be given.
    type: str
  chdir:
    description:
      - The directory (an absolute path in the container) to run the command in. When not set, the container's working
        directory. It is created when it does not exist, as Docker does.
    type: str
  env:
    description:
      - Environment variables for the command, added to (and overriding) the container's own.
    type: dict
  user:
    description:
      - The user to run the command as, like C(berth exec --user) - a name or uid, optionally with C(:group) or C(:gid),
        resolved in the container's own C(/etc/passwd) and C(/etc/group).
      - When not set, the container's user.
    type: str
  stdin:
    description:
      - Text written to the command's standard input, which is then closed. When not set, the command reads end of
        file at once.
    type: str
  stdin_add_newline:
    description:
      - Add a newline to the end of O(stdin).
    type: bool
    default: true
  strip_empty_ends:
    description:
      - Remove trailing newlines (and carriage returns) from RV(stdout) and RV(stderr).
    type: bool
    default: true
  privileged:
    description:
      - Run the command with every capability and without the seccomp filter, whatever the container has.
    type: bool
    default: false
  timeout:
    description:
      - Kill the command when it has not finished after this many seconds, and fail. No limit when not set.
    type: int
seealso:
  - module: berth.containers.container_info
  - plugin: berth.containers.berth
    plugin_type: connection
notes:
  - Set-uid programs (C(sudo), C(su)) cannot raise privileges in containers that run with C(no_new_privs), which Berth
    turns on except in systemd containers; use O(user) instead.
"""

EXAMPLES = r"""
- name: Run a command
  berth.containers.container_exec:
    container: web
    command: nginx -t
  register: result

- name: A shell script, as another user, in another directory
  berth.containers.container_exec:
    container: app
    argv:
      - /bin/sh
      - -c
      - ls -l | wc -l > /tmp/count
    user: www-data
    chdir: /srv/app
    env:
      LC_ALL: C.UTF-8

- name: Feed it standard input; a non-zero exit is fine here
  berth.containers.container_exec:
    container: db
    argv: [psql, -U, postgres]
    stdin: "SELECT 1;"
  register: query
  failed_when: query.rc not in [0, 1]
  changed_when: false
"""

RETURN = r"""
rc:
  description: The command's exit code; 128 plus the signal number when a signal killed it; 126 or 127 when it could
    not be started.
  returned: when the command ran or could not be started
  type: int
  sample: 0
stdout:
  description: The command's standard output.
  returned: when the command ran or could not be started
  type: str
  sample: "nginx: configuration file /etc/nginx/nginx.conf test is successful"
stderr:
  description: The command's standard error.
  returned: when the command ran or could not be started
  type: str
  sample: ""
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran or could not be started
  type: list
  elements: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when the command ran or could not be started
  type: list
  elements: str
cmd:
  description: The command and its arguments as they were (or, in check mode, would have been) run.
  returned: when the command ran or could not be started, and in check mode
  type: list
  elements: str
  sample: [nginx, -t]
msg:
  description: Why the task failed or was skipped.
  returned: on failure, and in check mode
  type: str
  sample: Command would have run in container web if not in check mode
"""

import shlex
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.berth.containers.plugins.module_utils.module_options import RUNTIME_ARGUMENT_SPEC, load_config
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import BerthError


class ContainerExec:
    """Runs the module's command in its container (or, in check mode, tells what would run)."""

    def __init__(self, module: AnsibleModule) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

        self.module = module
        self.params = module.params
        self.runtime = Runtime(load_config(self.params))
        self.argv = self._argv()

    def _argv(self) -> List[str]:
        if self.params["command"] is not None:
            try:
                argv = shlex.split(self.params["command"])
            except ValueError as exc:
                raise ValueError(f"cannot split command {self.params['command']!r} into arguments: {exc}") from None
        else:
            argv = list(self.params["argv"])
        if not argv or not argv[0]:
            raise ValueError("the command is empty: give the program to run in argv or command")
        return argv

    def _stdin(self) -> Optional[bytes]:
        text = self.params["stdin"]
        if text is None:
            return None
        if self.params["stdin_add_newline"]:
            text += "\n"
        return to_bytes(text, errors="surrogate_or_strict")

    def run(self) -> Dict[str, Any]:
        from ansible_collections.berth.containers.plugins.module_utils.runtime import exec_io

        name = self.params["container"]
        container = self.runtime.find(name)
        status = container.observe()["status"] if container is not None else "absent"
        if self.module.check_mode:
            found = "" if status == "running" else f" (it is {'missing' if container is None else status} now)"
            return {
                "changed": False,
                "skipped": True,
                "cmd": self.argv,
                "msg": f"Command would have run in container {name}{found} if not in check mode",
            }
        if container is None:
            raise BerthError(f"no such container: {name}")
        if status != "running":
            raise BerthError(f"container {container.name} is not running (it is {status}): start it first")
        env = [f"{key}={to_text(value)}" for key, value in (self.params["env"] or {}).items()] or None
        request = exec_io.ExecRequest(
            args=self.argv,
            env=env,
            cwd=self.params["chdir"],
            user=self.params["user"],
            privileged=self.params["privileged"],
        )
        outcome = exec_io.run(self.runtime, container, request, stdin=self._stdin(), timeout=self.params["timeout"])
        stdout = to_text(outcome.stdout, errors="surrogate_or_replace")
        stderr = to_text(outcome.stderr, errors="surrogate_or_replace")
        if self.params["strip_empty_ends"]:
            stdout, stderr = stdout.rstrip("\r\n"), stderr.rstrip("\r\n")
        result = {
            "changed": True,
            "cmd": self.argv,
            "rc": outcome.exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_lines": stdout.splitlines(),
            "stderr_lines": stderr.splitlines(),
        }
        if outcome.exit_code != 0:
            result.update(failed=True, msg=f"non-zero return code {outcome.exit_code}")
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True, "aliases": ["name"]},
            "argv": {"type": "list", "elements": "str"},
            "command": {"type": "str"},
            "chdir": {"type": "str"},
            "env": {"type": "dict"},
            "user": {"type": "str"},
            "stdin": {"type": "str"},
            "stdin_add_newline": {"type": "bool", "default": True},
            "strip_empty_ends": {"type": "bool", "default": True},
            "privileged": {"type": "bool", "default": False},
            "timeout": {"type": "int"},
            **RUNTIME_ARGUMENT_SPEC,
        },
        mutually_exclusive=[("argv", "command")],
        required_one_of=[("argv", "command")],
        supports_check_mode=True,
    )
    finish(module, ContainerExec)


if __name__ == "__main__":
    main()
