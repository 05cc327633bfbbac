#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: daemon_json
short_description: Merge settings into Docker's daemon.json without losing the others
version_added: 0.1.0
description:
  - Sets the keys given in O(config) in C(/etc/docker/daemon.json) (or O(path), for example the bundled runtime's
    C(/etc/berth/daemon.json), which takes the same keys) and keeps every key it is not asked to manage.
  - Removes the keys that an earlier run of this module set and that are no longer in O(config), the keys listed in
    O(absent), or with O(purge=true) every key not in O(config).
  - Validates the values of the keys dockerd knows the way dockerd does (registry mirror URLs, insecure registries,
    strings for C(log-opts), absolute paths, IP addresses and CIDRs, booleans, integers) before anything is written,
    because dockerd does not start with a bad daemon.json.
  - Refuses C(hosts) (and C(containerd)) unless O(allow_hosts_with_unit_override=true), because the stock C(docker.service)
    passes C(-H fd://) (and C(--containerd)), and dockerd refuses to start when an option is both a flag and a key.
  - Writes atomically with mode C(0644). Changes of key order or formatting are not changes.
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.attributes
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Before and after as JSON with sorted keys.
  idempotent:
    support: full
options:
  path:
    description:
      - The configuration file.
    type: path
    default: /etc/docker/daemon.json
  config:
    description:
      - The keys to set, with dockerd's names (C(registry-mirrors), C(log-opts), ...). Each value replaces the whole
        value of its key; objects such as C(log-opts) are not merged key by key.
    type: dict
    default: {}
  absent:
    description:
      - Keys to remove. A key cannot be both here and in O(config).
    type: list
    elements: str
    default: []
  purge:
    description:
      - Remove every key that is not in O(config), also keys set by hand or by other tools.
    type: bool
    default: false
  allow_hosts_with_unit_override:
    description:
      - Allow the C(hosts) and C(containerd) keys. Set this only when the C(ExecStart) of C(docker.service) was
        overridden (systemd drop-in) without the C(-H) and C(--containerd) flags; the C(berth.containers.docker_engine)
        role does both when C(docker_engine_daemon_options) has C(hosts).
    type: bool
    default: false
  unknown_keys:
    description:
      - What to do with a key this module does not know. dockerd refuses to start on keys it does not know, but newer
        Docker releases add keys, so the default only warns.
    type: str
    choices: [warn, fail, ignore]
    default: warn
  backup:
    description:
      - Keep a copy of the old file, with a timestamp in its name, when it changes.
    type: bool
    default: false
notes:
  - The names of the keys this module set are kept next to the file, in C(.<name>.managed-keys) (for example
    C(/etc/docker/.daemon.json.managed-keys)), so that a key dropped from O(config) is removed on the next run.
  - The daemon reads the file when it starts; restart it (or send SIGHUP, for the keys dockerd reloads) after a change.
    The C(berth.containers.docker_engine) role restarts it from a handler.
seealso:
  - module: berth.containers.engine_info
  - name: dockerd configuration file reference
    description: Every daemon.json key and its type.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Pull Docker Hub images through a mirror
  berth.containers.daemon_json:
    config:
      registry-mirrors:
        - https://mirror.example.com
  register: daemon_config

- name: Rotate container logs and use the systemd cgroup driver; drop an old key
  berth.containers.daemon_json:
    config:
      log-driver: json-file
      log-opts:
        max-size: 10m
        max-file: "3"
      exec-opts:
        - native.cgroupdriver=systemd
    absent:
      - debug
    backup: true

- name: Configure the bundled runtime with the same keys
  berth.containers.daemon_json:
    path: /etc/berth/daemon.json
    config:
      registry-mirrors: [https://mirror.example.com]
"""

RETURN = r"""
config:
  description: The configuration in the file after the run (what it would be in check mode).
  returned: always
  type: dict
  sample: {"registry-mirrors": ["https://mirror.example.com"], "log-driver": "json-file"}
path:
  description: The configuration file.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
changed_keys:
  description: Keys added or given a new value.
  returned: always
  type: list
  elements: str
  sample: [registry-mirrors]
removed_keys:
  description: Keys removed.
  returned: always
  type: list
  elements: str
  sample: [debug]
backup_file:
  description: The copy of the old file.
  returned: when O(backup=true) and the file changed
  type: str
  sample: /etc/docker/daemon.json.12345.2026-11-28@10:00:00~
"""

import json
import os
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.engine import daemon_config
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish
from ansible_collections.berth.containers.plugins.module_utils.runtime import fsutil
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ConfigError


def managed_keys_path(path: str) -> str:
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.managed-keys")


class DaemonJson:
    """Plan and apply one merge of requested keys into a daemon.json."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.path: str = self.params["path"]
        self.warnings: List[str] = []

    def _read(self, path: str) -> Optional[bytes]:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise ConfigError(f"{path} is a directory, not a daemon.json file") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None

    def _validate_request(self, config: Dict[str, Any]) -> None:
        unknown = [key for key in config if key not in daemon_config.VALIDATORS]
        if unknown and self.params["unknown_keys"] == "fail":
            raise ConfigError(
                f"daemon.json keys {unknown} are not options this module knows (unknown_keys=fail); "
                "check their spelling, or set unknown_keys=warn for keys of a newer Docker release"
            )
        for warning in daemon_config.validate(config):
            if "is not an option this module knows" in warning and self.params["unknown_keys"] == "ignore":
                continue
            self.warnings.append(warning)
        for key in self.params["absent"]:
            if not key:
                raise ConfigError("absent: key names must not be empty")

    def _previously_managed(self) -> List[str]:
        raw = self._read(managed_keys_path(self.path))
        if raw is None:
            return []
        try:
            keys = json.loads(raw.decode("utf-8")).get("keys", [])
        except (ValueError, AttributeError, UnicodeDecodeError):
            self.warnings.append(f"ignoring the unreadable list of managed keys {managed_keys_path(self.path)}")
            return []
        return [key for key in keys if isinstance(key, str)]

    def _warn_about_existing(self, current: Dict[str, Any], config: Dict[str, Any]) -> None:
        for key, value in current.items():
            if key in config or key in self.params["absent"] or self.params["purge"]:
                continue
            try:
                daemon_config.validate_key(key, value)
            except ConfigError as exc:
                self.warnings.append(f"{self.path} already holds an invalid value that dockerd will refuse: {exc}")
            if key in daemon_config.UNIT_FLAG_KEYS and not self.params["allow_hosts_with_unit_override"]:
                self.warnings.append(
                    f"{self.path} already sets {key!r}, which conflicts with the docker.service unit's flags "
                    "unless its ExecStart is overridden"
                )

    def _write(self, result: Dict[str, Any]) -> Optional[str]:
        backup = None
        if self.params["backup"] and os.path.exists(self.path):
            backup = self.module.backup_local(self.path)
        # A daemon.json that is a symlink (to a file kept elsewhere) stays one: write its target.
        target = os.path.realpath(self.path)
        fsutil.makedirs(os.path.dirname(target) or ".", 0o755)
        fsutil.write_atomic(target, daemon_config.render(result).encode("utf-8"), mode=0o644)
        if self.module.selinux_enabled():
            self.module.set_default_selinux_context(target, False)
        return backup

    def _record_managed(self, keys: List[str], previous: List[str]) -> None:
        if sorted(keys) == sorted(previous):
            return
        sidecar = managed_keys_path(self.path)
        if keys:
            data = json.dumps({"file": self.path, "keys": sorted(keys)}, indent=2) + "\n"
            fsutil.makedirs(os.path.dirname(sidecar) or ".", 0o755)
            fsutil.write_atomic(sidecar, data.encode("utf-8"), mode=0o644)
        elif os.path.exists(sidecar):
            os.unlink(sidecar)

    def run(self) -> Dict[str, Any]:
        config: Dict[str, Any] = self.params["config"] or {}
        self._validate_request(config)
        daemon_config.check_unit_flag_keys(config, self.params["allow_hosts_with_unit_override"])
        raw = self._read(self.path)
        current = daemon_config.parse_existing(raw, self.path) if raw is not None else {}
        previous = self._previously_managed()
        plan = daemon_config.plan(current, config, self.params["absent"], self.params["purge"], previous)
        self._warn_about_existing(current, config)
        result: Dict[str, Any] = {
            "changed": plan.changed,
            "config": plan.result,
            "path": self.path,
            "changed_keys": list(plan.changed_keys),
            "removed_keys": list(plan.removed_keys),
        }
        if not self.module.check_mode:
            if plan.changed:
                backup = self._write(plan.result)
                if backup:
                    result["backup_file"] = backup
            self._record_managed(list(plan.managed_keys), previous)
        if self.module._diff:
            result["diff"] = {
                "before_header": self.path,
                "after_header": self.path,
                "before": daemon_config.render(current) if raw is not None else "",
                "after": daemon_config.render(plan.result) if (raw is not None or plan.changed) else "",
            }
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": daemon_config.DEFAULT_PATH},
            "config": {"type": "dict", "default": {}},
            "absent": {"type": "list", "elements": "str", "default": []},
            "purge": {"type": "bool", "default": False},
            "allow_hosts_with_unit_override": {"type": "bool", "default": False},
            "unknown_keys": {"type": "str", "choices": ["warn", "fail", "ignore"], "default": "warn"},
            "backup": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    finish(module, DaemonJson)


if __name__ == "__main__":
    main()
