#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: container_info
short_description: Inspect a container of the bundled runtime, and read its logs
version_added: 0.1.0
description:
  - Tells whether a container of Berth's bundled runtime exists, returns its inspect data (like
    C(docker container inspect)) and its state, and optionally the last lines of its logs (like
    C(docker logs --tail N), both streams).
  - The state is observed, not remembered - a container recorded as running whose process died is reported
    as exited.
  - Reads only; it never changes anything (not even the container's recorded state).
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.runtime
  - berth.containers.attributes
  - berth.containers.attributes.INFO_MODULE
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
options:
  name:
    description:
      - The container's name, ID, or a unique prefix of its ID.
    type: str
    required: true
  logs:
    description:
      - Also return the container's last log lines in RV(logs).
    type: bool
    default: false
  logs_tail:
    description:
      - How many of the last log lines to return with O(logs=true), counting both streams; V(-1) returns all of them.
      - Lines are read from the end of the log files, so a long log costs no more than a short one.
    type: int
    default: 100
seealso:
  - module: berth.containers.container_exec
  - plugin: berth.containers.berth
    plugin_type: connection
"""

EXAMPLES = r"""
- name: Is web running?
  berth.containers.container_info:
    name: web
  register: web

- name: Show why it stopped
  ansible.builtin.debug:
    msg: "{{ web.container.State.ExitCode }}: {{ web.logs | map(attribute='text') | list }}"
  when: web.exists and web.state != 'running'

- name: The last 20 lines of its output
  berth.containers.container_info:
    name: web
    logs: true
    logs_tail: 20
  register: web_logs
"""

RETURN = r"""
exists:
  description: Whether the container exists.
  returned: always
  type: bool
  sample: true
state:
  description:
    - The container's state as observed now - V(created), V(running), V(restarting) or V(exited); V(absent) when it
      does not exist.
  returned: always
  type: str
  sample: running
container:
  description:
    - The container's inspect data, in the shape of C(docker container inspect) (C(Id), C(Name), C(State), C(Config),
      C(HostConfig), C(Mounts), C(NetworkSettings), C(GraphDriver)), plus C(Berth) with the create spec it was made
      from. V(null) when it does not exist.
  returned: always
  type: dict
  sample:
    Id: 6f8e0d1c4b2a...
    Name: /web
    State:
      Status: running
      Running: true
      Pid: 4242
      ExitCode: 0
    Config:
      Image: nginx
      User: ""
logs:
  description:
    - The last O(logs_tail) log records of the container, oldest first, both streams interleaved as they were written.
      Each has C(stream) (V(stdout) or V(stderr)), C(time) (RFC 3339 with nanoseconds) and C(text) (the line without
      its newline).
    - Empty when the container does not exist or logged nothing.
  returned: when O(logs=true)
  type: list
  elements: dict
  sample:
    - stream: stderr
      time: "2026-11-28T05:44:48.123456789Z"
      text: "nginx: [notice] start worker processes"
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.module_options import RUNTIME_ARGUMENT_SPEC, load_config
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import BerthError


def container_info(params: Dict[str, Any]) -> Dict[str, Any]:
    """The module's result for *params*; reads the container's files and nothing else."""
    from ansible_collections.berth.containers.plugins.module_utils.runtime import logtail
    from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

    if params["logs_tail"] < -1:
        raise ValueError(f"logs_tail must be -1 (all lines) or a number of lines, not {params['logs_tail']}")
    runtime = Runtime(load_config(params))
    container = runtime.find(params["name"])
    result: Dict[str, Any] = {"changed": False, "exists": container is not None, "state": "absent", "container": None}
    if container is not None:
        inspected = runtime.inspect(container)
        result.update(container=inspected, state=inspected["State"]["Status"])
    if params["logs"]:
        count = None if params["logs_tail"] == -1 else params["logs_tail"]
        result["logs"] = logtail.tail(runtime.log_files(container), count) if container is not None else []
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "logs": {"type": "bool", "default": False},
            "logs_tail": {"type": "int", "default": 100},
            **RUNTIME_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    try:
        result = container_info(module.params)
    except (BerthError, ValueError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
