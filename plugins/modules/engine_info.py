#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: engine_info
short_description: Ask the running Docker daemon what C(docker info) shows
version_added: 0.1.0
description:
  - Asks the Docker daemon over its unix socket (C(/_ping), C(/version), C(/info)) for the facts an operator reads in
    C(docker info) and C(docker version) - server version, storage driver, cgroup driver and version, registry mirrors,
    insecure registries, containers running and in total - and returns them, with the daemon's raw answers.
  - Can wait, for a bounded time, for a daemon that was just (re)started to answer.
  - Needs nothing on the host but Python's standard library; the docker CLI is not used.
  - Fails with a clear message when no daemon answers.
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.attributes
  - berth.containers.attributes.INFO_MODULE
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
options:
  docker_host:
    description:
      - The daemon's unix socket, as V(unix:///path) (or a plain absolute path).
    type: str
    default: unix:///var/run/docker.sock
  wait_timeout:
    description:
      - Seconds to wait for the daemon to answer C(/_ping) before failing; V(0) asks once.
      - Use it right after starting or restarting the daemon, when its socket does not exist or refuses connections yet.
    type: float
    default: 0
  timeout:
    description:
      - Seconds to wait for each answer of a running daemon.
    type: float
    default: 30
notes:
  - The user running the module needs access to the socket (root, or a member of the C(docker) group).
seealso:
  - module: berth.containers.daemon_json
  - name: Docker Engine API, system information
    description: The C(/info) answer this module reads.
    link: https://docs.docker.com/reference/api/engine/
"""

EXAMPLES = r"""
- name: Wait for the restarted daemon and read its settings
  berth.containers.engine_info:
    wait_timeout: 60
  register: docker_engine

- name: Fail unless the mirror is in use
  ansible.builtin.assert:
    that:
      - "'https://mirror.example.com/' in docker_engine.engine.registry_mirrors"
"""

RETURN = r"""
engine:
  description: What C(docker info) and C(docker version) show, with snake_case names.
  returned: always
  type: dict
  contains:
    server_version:
      description: The daemon's version.
      type: str
      sample: 27.3.1
    api_version:
      description: The newest API version the daemon speaks.
      type: str
      sample: "1.47"
    storage_driver:
      description: The storage driver.
      type: str
      sample: overlay2
    docker_root_dir:
      description: The data root.
      type: str
      sample: /var/lib/docker
    cgroup_driver:
      description: C(systemd) or C(cgroupfs).
      type: str
      sample: systemd
    cgroup_version:
      description: C(1) or C(2) (empty when the daemon does not say).
      type: str
      sample: "2"
    logging_driver:
      description: The default logging driver.
      type: str
      sample: json-file
    registry_mirrors:
      description: The registry mirrors in use, as C(docker info) prints them (with a trailing slash).
      type: list
      elements: str
      sample: [https://mirror.example.com/]
    insecure_registries:
      description: Insecure registries as C(docker info) lists them, host names first, then CIDRs (C(127.0.0.0/8) is always there).
      type: list
      elements: str
      sample: [registry.local:5000, 127.0.0.0/8]
    live_restore_enabled:
      description: Whether containers keep running while the daemon restarts.
      type: bool
    containers:
      description: The number of containers.
      type: int
    containers_running:
      description: The number of running containers.
      type: int
    containers_paused:
      description: The number of paused containers.
      type: int
    containers_stopped:
      description: The number of stopped containers.
      type: int
    images:
      description: The number of images.
      type: int
    warnings:
      description: Warnings the daemon reports (for example missing kernel features).
      type: list
      elements: str
    operating_system:
      description: The host's operating system as the daemon sees it.
      type: str
      sample: Debian GNU/Linux 12 (bookworm)
    kernel_version:
      description: The kernel release.
      type: str
    security_options:
      description: Active security options (seccomp, apparmor, selinux, rootless).
      type: list
      elements: str
info:
  description: The daemon's raw C(/info) answer.
  returned: always
  type: dict
version:
  description: The daemon's raw C(/version) answer.
  returned: always
  type: dict
waited:
  description: Seconds spent waiting for the daemon to answer.
  returned: always
  type: float
  sample: 1.2
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.engine import docker_api
from ansible_collections.berth.containers.plugins.module_utils.engine import info as engine_info
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument


class EngineInfo:
    """Read the daemon's state; never changes anything."""

    def __init__(self, module: AnsibleModule) -> None:
        params = module.params
        if params["wait_timeout"] < 0 or params["timeout"] <= 0:
            raise InvalidArgument("wait_timeout must be 0 or more and timeout more than 0 seconds")
        self.client = docker_api.DockerSocketClient(params["docker_host"], timeout=params["timeout"])
        self.wait_timeout: float = params["wait_timeout"]

    def run(self) -> Dict[str, Any]:
        waited = docker_api.wait_for_daemon(self.client, self.wait_timeout)
        version = self.client.get_json("/version")
        info = self.client.get_json("/info")
        return {
            "changed": False,
            "engine": engine_info.summarize(info, version),
            "info": info,
            "version": version,
            "waited": round(waited, 3),
        }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "docker_host": {"type": "str", "default": docker_api.DEFAULT_DOCKER_HOST},
            "wait_timeout": {"type": "float", "default": 0},
            "timeout": {"type": "float", "default": 30},
        },
        supports_check_mode=True,
    )
    finish(module, EngineInfo)


if __name__ == "__main__":
    main()
