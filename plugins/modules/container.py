#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: container
short_description: Manage containers of the bundled runtime, idempotently
version_added: 0.1.0
description:
  - Creates, starts, stops, recreates and removes containers of Berth's bundled runtime (no daemon needed).
  - The whole create spec is stored with the container. A task whose spec equals the stored one (after normalisation
    is applied to both - option order, units such as V(64m), defaults made explicit, and the image's defaults merged
    the way Docker merges them) and whose container is in the requested state reports no change.
  - Any difference in the spec, or a different image ID behind the requested image name (for example after a newer
    image was pulled for the tag), recreates the container (stop, remove, create, start). With C(--diff) the output
    names each differing option with its value before and after. O(comparisons) can relax this per option.
  - Check mode predicts exactly, including whether O(pull=always) would bring a new image (the registry is asked for
    the tag's manifest; no layer is downloaded).
  - Containers with a restart policy get a systemd unit so that they come back after a reboot (see O(restart_policy)).
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.runtime
  - berth.containers.runtime.REGISTRY
  - berth.containers.attributes
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
attributes:
  check_mode:
    support: full
    details:
      - Asks the registry for the tag's manifest when a pull could change the image, like a real run would.
  diff_mode:
    support: full
    details:
      - The options that differ, with their values before and after, and the state.
  idempotent:
    support: partial
    details:
      - Idempotent, except that O(pull=always) recreates the container when the tag was moved in the registry
        between two runs, and O(restart=true) restarts a running container every time.
options:
  name:
    description:
      - The container's name.
    type: str
    required: true
  image:
    description:
      - The image reference (V(nginx), V(registry.example.com:5000/app:v2), V(busybox@sha256:...)).
      - Required to create a container. When left out, an existing container keeps its image and only its state is
        managed.
    type: str
  pull:
    description:
      - V(missing) pulls the image when it is not in the store; V(always) asks the registry every time and pulls when
        the tag names another image (then the container is recreated); V(never) requires the image to be in the store.
    type: str
    choices: [missing, always, never]
    default: missing
  platform:
    description:
      - The platform to pull for multi-platform images, like V(linux/arm64).
    type: str
  state:
    description:
      - V(started) (created if needed, and running), V(stopped) (created if needed, not running), V(present)
        (created if needed, state not changed), V(absent) (removed).
    type: str
    choices: [started, stopped, present, absent]
    default: started
  command:
    description:
      - The command, replacing the image's C(Cmd). A string is split like a shell would (without expansion).
    type: raw
  entrypoint:
    description:
      - The entrypoint, replacing the image's C(Entrypoint) (and, as in Docker, its C(Cmd) unless O(command) is set).
    type: list
    elements: str
  env:
    description:
      - Environment variables, merged over the image's (as Docker does). Values must be strings; quote numbers and
        booleans in YAML.
    type: dict
  env_file:
    description:
      - Files of C(KEY=VALUE) lines on the managed host, read before O(env) (which wins).
    type: list
    elements: path
  volumes:
    description:
      - V(/host/path:/container/path[:ro]) bind mounts, V(name:/container/path[:ro]) named volumes (created under the
        data root when missing), V(/container/path) anonymous volumes.
      - The image's C(VOLUME)s become anonymous volumes unless a mount is given for the same path.
      - As with Docker, an empty volume (never a bind mount) mounted over a directory of the image is first filled with
        that directory's content, owner and mode; a volume with content is used as it is.
    type: list
    elements: str
  tmpfs:
    description:
      - tmpfs mounts, path to options (V(size=64m,mode=1777)).
    type: dict
  working_dir:
    description:
      - The working directory, replacing the image's C(WorkingDir).
    type: str
  user:
    description:
      - User name or UID[:GID], resolved in the container's C(/etc/passwd), replacing the image's C(User).
    type: str
  hostname:
    description:
      - The host name (default, as in Docker, the first 12 characters of the container ID).
    type: str
  labels:
    description:
      - Labels, merged over the image's.
    type: dict
  memory:
    description:
      - Memory limit, in bytes or with a unit (V(64m), V(1g)).
    type: str
  cpus:
    description:
      - CPU limit as a number of CPUs (V(0.5)).
    type: float
  cpu_shares:
    description:
      - Relative CPU weight (Docker's default is 1024).
    type: int
  pids_limit:
    description:
      - Maximum number of processes.
    type: int
  network_mode:
    description:
      - V(bridge) (the C(berth0) bridge), V(host), V(none) or V(container:NAME).
    type: str
    default: bridge
  published_ports:
    description:
      - Ports to publish, as Docker's C(-p) writes them (V(88:80), V(127.0.0.1:5353:53/udp), V(8000-8002:80-82)).
        Compared as a set.
    type: list
    elements: str
    aliases: [ports]
  publish_all_ports:
    description:
      - Publish every port the image exposes, on ephemeral host ports.
    type: bool
    default: false
  network_aliases:
    description:
      - More names for the container on the bridge.
    type: list
    elements: str
  restart_policy:
    description:
      - V(no), V(always), V(unless-stopped) or V(on-failure) (with O(restart_retries), or V(on-failure:N)).
      - The container's monitor restarts it by this policy. For every policy but V(no), a systemd unit
        C(/etc/systemd/system/berth-NAME.service) is also written and enabled, which brings the container back after a
        reboot; it is written only when its content differs (then C(systemctl daemon-reload)), never in check mode,
        and removed with the container.
    type: str
    default: "no"
  restart_retries:
    description:
      - Maximum restarts for V(on-failure).
    type: int
  privileged:
    description:
      - Give the container all capabilities and host devices, without seccomp, masked paths or read-only paths.
    type: bool
    default: false
  userns:
    description:
      - The user namespace of the container. V(host) (the default) shares the host's, as Docker does.
      - V(auto) maps the container's ids 0-65535 to the subordinate ids of the user C(berth) in C(/etc/subuid) and
        C(/etc/subgid) (like Docker's C(userns-remap=default)); V(HOST_UID[:HOST_GID[:SIZE]]) maps them to the ids
        given (GID defaults to the UID, SIZE to 65536). The container's root is then an unprivileged user of the
        host; image layers, the container's changes and named volumes keep the image's ids on disk, shown through
        idmapped mounts (Linux 5.19+). Bind-mounted host files keep their host owners.
      - Cannot be combined with O(privileged) or systemd containers.
    type: str
    default: host
  capabilities:
    description:
      - Capabilities to add to Docker's default set (V(NET_ADMIN) or V(CAP_NET_ADMIN)).
    type: list
    elements: str
    aliases: [cap_add]
  cap_drop:
    description:
      - Capabilities to drop (V(ALL) for all).
    type: list
    elements: str
  read_only:
    description:
      - Mount the container's root filesystem read-only.
    type: bool
    default: false
  systemd:
    description:
      - Run systemd as PID 1 (writable cgroup, tmpfs C(/run) and C(/tmp), C(container=berth), stop with
        SIGRTMIN+3). V(auto) when the command is C(/sbin/init) or systemd.
    type: str
    choices: ["true", "false", auto]
    default: auto
  stop_signal:
    description:
      - Signal that stops the container (default the image's C(StopSignal), else SIGTERM).
    type: str
  stop_timeout:
    description:
      - Seconds to wait after the stop signal before SIGKILL (default 10).
    type: int
  tty:
    description:
      - Allocate a pseudo-terminal.
    type: bool
    default: false
  interactive:
    description:
      - Keep standard input open.
    type: bool
    default: false
  no_new_privileges:
    description:
      - Set C(no_new_privs) on the container's processes, so that setuid binaries and file capabilities cannot raise
        their privileges (Docker's C(--security-opt no-new-privileges)).
      - When not set, it is on, except for systemd containers, where setuid tools such as C(sudo) are part of the
        booted system. Set V(false) to allow C(sudo)/C(su) (for example Ansible's C(become) through the
        C(berth.containers.berth) connection) in a container that is not a systemd one.
    type: bool
  recreate:
    description:
      - Recreate the container even when nothing differs.
    type: bool
    default: false
  restart:
    description:
      - Restart a running container even when nothing differs (with O(state=started)).
    type: bool
    default: false
  comparisons:
    description:
      - How to compare each option with the existing container, option name to V(strict) (must be equal, the
        default), V(ignore), or V(allow_more_present) (the container may have more list or dict entries than the task
        names, for example extra environment variables). The key V(*) sets every option first (V(strict) or
        V(ignore)); V(image) compares the image ID, V(image_name) the reference.
    type: dict
  image_name_mismatch:
    description:
      - What to do when the container was created from another image name that has the same image ID, V(recreate) it
        or V(ignore) the name.
    type: str
    choices: [recreate, ignore]
    default: recreate
  keep_volumes:
    description:
      - With O(state=absent), keep anonymous volumes.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for the container to stop (default its stop timeout).
    type: int
notes:
  - The image is pulled by O(pull) before the comparison, so that a newer image behind the tag is noticed.
seealso:
  - module: berth.containers.container_info
  - module: berth.containers.image
"""

EXAMPLES = r"""
- name: Run nginx with port 88 published, as `berth run -d -p 88:80 --name web nginx` would
  berth.containers.container:
    name: web
    image: nginx
    published_ports:
      - "88:80"

- name: A worker that comes back after a reboot, with limits
  berth.containers.container:
    name: worker
    image: registry.example.com/team/worker:2.1
    command: ["worker", "--queue", "default"]
    env:
      LOG_LEVEL: info
    memory: 256m
    cpus: 0.5
    restart_policy: unless-stopped

- name: Keep whatever environment the image adds, compare only what is named
  berth.containers.container:
    name: worker
    image: registry.example.com/team/worker:2.1
    env:
      LOG_LEVEL: info
    comparisons:
      env: allow_more_present

- name: Follow the tag in the registry (recreates when it moved)
  berth.containers.container:
    name: web
    image: nginx
    pull: always
    published_ports: ["88:80"]

- name: Stop it
  berth.containers.container:
    name: web
    state: stopped

- name: Remove it
  berth.containers.container:
    name: web
    state: absent
"""

RETURN = r"""
container:
  description: The container as C(berth inspect) shows it (Docker's inspect fields, plus C(Berth) with the stored spec).
  returned: success, except in check mode when the container does not exist yet or is removed
  type: dict
  sample: {"Id": "3f6c...", "Name": "/web", "State": {"Status": "running", "Running": true, "Pid": 4242}}
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["Pulled image docker.io/library/nginx:latest", "Recreated container web: published_ports differ", "Started container web"]
differences:
  description: The options that differ between the existing container and the task.
  returned: always
  type: list
  elements: str
  sample: ["published_ports", "env"]
"""

from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils import compare
from ansible_collections.berth.containers.plugins.module_utils.lasting_runtime import prefer_lasting_copy
from ansible_collections.berth.containers.plugins.module_utils.module_options import (
    REGISTRY_ARGUMENT_SPEC,
    REGISTRY_REQUIRED_TOGETHER,
    RUNTIME_ARGUMENT_SPEC,
    load_config,
    registry_options,
)
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish

SPEC_OPTIONS = (
    "command",
    "entrypoint",
    "env",
    "env_file",
    "volumes",
    "tmpfs",
    "working_dir",
    "user",
    "hostname",
    "labels",
    "memory",
    "cpus",
    "cpu_shares",
    "pids_limit",
    "network_mode",
    "published_ports",
    "publish_all_ports",
    "network_aliases",
    "privileged",
    "userns",
    "cap_drop",
    "read_only",
    "stop_signal",
    "stop_timeout",
    "tty",
    "interactive",
    "no_new_privileges",
)


def requested_options(params: Dict[str, Any], image: str) -> Dict[str, Any]:
    """The module's parameters as container options for :func:`spec.normalize`."""
    options = {key: params[key] for key in SPEC_OPTIONS if params.get(key) is not None}
    options["image"] = image
    options["cap_add"] = params.get("capabilities") or []
    policy = params["restart_policy"] or "no"
    if params.get("restart_retries") is not None:
        policy = f"{policy.partition(':')[0]}:{params['restart_retries']}"
    options["restart_policy"] = policy
    options["systemd"] = params["systemd"]
    return options


def state_view(container: Any) -> Dict[str, Any]:
    if container is None:
        return {"exists": False}
    state = container.observe()
    return {"exists": True, "status": state["status"], "image": container.image_id}


class ContainerManager:
    """Brings one named container to the requested spec and state."""

    def __init__(self, module: AnsibleModule, config: Any) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.runtime = Runtime(config)
        self.actions: List[str] = []
        self.differences: List[str] = []
        self.diff_before: Dict[str, Any] = {}
        self.diff_after: Dict[str, Any] = {}
        self.changed = False
        self._diffs: List[Any] = []

    # -- helpers ------------------------------------------------------------------------

    def act(self, text: str) -> None:
        self.actions.append(text)
        self.changed = True

    def modes(self) -> Dict[str, str]:
        requested = dict(self.params.get("comparisons") or {})
        if self.params["image_name_mismatch"] == "ignore":
            requested.setdefault("image_name", "ignore")
        try:
            return compare.comparison_modes(requested)
        except ValueError as exc:
            self.module.fail_json(msg=str(exc))
            raise

    def image(self, name: str) -> Any:
        """The image plan: pulled for real, or predicted in check mode."""
        images = self.runtime.images
        policy = self.params["pull"]
        platform = self.params.get("platform")
        if policy == "never":
            record = images.get(name)
            return record.id, record, None
        options = registry_options(self.params)
        if self.check_mode:
            plan = images.plan_pull(name, options, platform, policy)
        else:
            plan = images.ensure(name, options, platform, policy)
        if plan.changed:
            self.act(f"Pulled image {plan.reference}")
        record = images.find(plan.image_id) if plan.image_id else None
        remote_config = None
        if record is None and self.check_mode and plan.image_id:
            # The new image is not local: its config (a small blob) tells what the container would run.
            remote_config = images.remote_config(name, options, platform)
        return plan.image_id, record, remote_config

    # -- the work -----------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        import contextlib
        import os

        from ansible_collections.berth.containers.plugins.module_utils.runtime import fsutil

        name = self.params["name"]
        # Runs of this module for one name (parallel forks of a play) take turns, so the
        # second sees the container the first made instead of failing on the name.
        guard: Any = contextlib.nullcontext()
        if not self.check_mode:
            locks = fsutil.makedirs(self.runtime.store.locks, 0o700)
            guard = fsutil.locked(os.path.join(locks, f"container-{name}.lock"))
        with guard:
            existing = self.runtime.find(name)
            self.diff_before = state_view(existing)
            if self.params["state"] == "absent":
                self.absent(existing)
            else:
                self.present(existing)
        result: Dict[str, Any] = {"changed": self.changed, "actions": self.actions, "differences": self.differences}
        final = self.runtime.find(name)
        result["container"] = self.runtime.inspect(final) if final is not None else {}
        if not self.check_mode:
            self.diff_after = state_view(final)
        self.diff_before.update({key: before for key, before, _after in self._diffs})
        self.diff_after.update({key: after for key, _before, after in self._diffs})
        result["diff"] = {"before": self.diff_before, "after": self.diff_after}
        return result

    def absent(self, existing: Any) -> None:
        self.diff_after = {"exists": False}
        if existing is None:
            return
        self.act(f"Removed container {existing.name}")
        if not self.check_mode:
            self.runtime.remove(existing, force=True, volumes=not self.params["keep_volumes"])

    def present(self, existing: Any) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime import spec

        image_name = self.params.get("image") or (existing.record["image"] if existing else None)
        if image_name is None:
            self.module.fail_json(msg=f"container {self.params['name']} does not exist: give an image to create it")
        requested = spec.normalize(requested_options(self.params, image_name))
        image_id, record, remote_config = self.image(requested["image"])
        modes = self.modes()
        self._diffs = []
        if existing is not None:
            if not self.params.get("image"):
                modes["image"] = modes["image_name"] = "ignore"
            requested_view = self.requested_view(requested, image_id, record, remote_config)
            existing_view = compare.view(existing.spec, existing.effective, existing.image_id)
            if requested_view is None:
                # A new image whose config is not local yet (check mode): the image differs, nothing more is known.
                self._diffs = [("image", existing.image_id, image_id)]
            else:
                self._diffs = compare.differences(existing_view, requested_view, modes)
            self.differences = [key for key, _before, _after in self._diffs]
        container = existing
        if existing is None or self.differences or self.params["recreate"]:
            container = self.recreate(existing, requested)
        self.boot_unit(requested)
        self.converge_state(container, fresh=container is not existing)

    def requested_view(
        self, requested: Dict[str, Any], image_id: Optional[str], record: Any, remote_config: Optional[Dict[str, Any]]
    ) -> Optional[Dict[str, Any]]:
        from ansible_collections.berth.containers.plugins.module_utils.runtime import spec

        image_config = self.runtime.images.config_of(record) if record is not None else remote_config
        if image_config is None:
            return None
        return compare.view(requested, spec.effective(requested, image_config), image_id)

    def recreate(self, existing: Any, requested: Dict[str, Any]) -> Any:
        name = self.params["name"]
        if existing is not None:
            reason = ", ".join(self.differences) + " differ" if self.differences else "recreate requested"
            self.act(f"Recreated container {name}: {reason}")
            if not self.check_mode:
                self.runtime.remove(existing, force=True, volumes=False)
        else:
            self.act(f"Created container {name}")
        if self.check_mode:
            return None
        return self.runtime.create(requested, name=name)

    def boot_unit(self, requested: Dict[str, Any]) -> None:
        written = self.runtime.ensure_boot_unit(self.params["name"], requested["restart_policy"], self.check_mode)
        if written:
            self.act(f"Wrote systemd unit {written}")

    def converge_state(self, container: Any, fresh: bool) -> None:
        wanted = self.params["state"]
        name = self.params["name"]
        status = container.observe()["status"] if container is not None else "created"
        running = status in ("running", "restarting")
        self.diff_after = {"exists": True, "status": status}
        if wanted == "started" and not running:
            self.act(f"Started container {name}")
            self.diff_after["status"] = "running"
            if not self.check_mode:
                self.runtime.start(container)
        elif wanted == "started" and self.params["restart"] and not fresh:
            self.act(f"Restarted container {name}")
            if not self.check_mode:
                self.runtime.restart(container, self.params.get("timeout"))
        elif wanted == "stopped" and running:
            self.act(f"Stopped container {name}")
            self.diff_after["status"] = "exited"
            if not self.check_mode:
                self.runtime.stop(container, self.params.get("timeout"))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "image": {"type": "str"},
            "pull": {"type": "str", "choices": ["missing", "always", "never"], "default": "missing"},
            "platform": {"type": "str"},
            "state": {"type": "str", "choices": ["started", "stopped", "present", "absent"], "default": "started"},
            "command": {"type": "raw"},
            "entrypoint": {"type": "list", "elements": "str"},
            "env": {"type": "dict"},
            "env_file": {"type": "list", "elements": "path"},
            "volumes": {"type": "list", "elements": "str"},
            "tmpfs": {"type": "dict"},
            "working_dir": {"type": "str"},
            "user": {"type": "str"},
            "hostname": {"type": "str"},
            "labels": {"type": "dict"},
            "memory": {"type": "str"},
            "cpus": {"type": "float"},
            "cpu_shares": {"type": "int"},
            "pids_limit": {"type": "int"},
            "network_mode": {"type": "str", "default": "bridge"},
            "published_ports": {"type": "list", "elements": "str", "aliases": ["ports"]},
            "publish_all_ports": {"type": "bool", "default": False},
            "network_aliases": {"type": "list", "elements": "str"},
            "restart_policy": {"type": "str", "default": "no"},
            "restart_retries": {"type": "int"},
            "privileged": {"type": "bool", "default": False},
            "userns": {"type": "str", "default": "host"},
            "capabilities": {"type": "list", "elements": "str", "aliases": ["cap_add"]},
            "cap_drop": {"type": "list", "elements": "str"},
            "read_only": {"type": "bool", "default": False},
            "systemd": {"type": "str", "choices": ["true", "false", "auto"], "default": "auto"},
            "stop_signal": {"type": "str"},
            "stop_timeout": {"type": "int"},
            "tty": {"type": "bool", "default": False},
            "interactive": {"type": "bool", "default": False},
            "no_new_privileges": {"type": "bool"},
            "recreate": {"type": "bool", "default": False},
            "restart": {"type": "bool", "default": False},
            "comparisons": {"type": "dict"},
            "image_name_mismatch": {"type": "str", "choices": ["recreate", "ignore"], "default": "recreate"},
            "keep_volumes": {"type": "bool", "default": False},
            "timeout": {"type": "int"},
            **RUNTIME_ARGUMENT_SPEC,
            **REGISTRY_ARGUMENT_SPEC,
        },
        required_together=REGISTRY_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    finish(module, manager)


def manager(module: AnsibleModule) -> ContainerManager:
    """The manager of the task, with the runtime imported from its lasting, compiled copy where possible."""
    config = load_config(module.params)
    prefer_lasting_copy(config, install=not module.check_mode)
    return ContainerManager(module, config)


if __name__ == "__main__":
    main()
