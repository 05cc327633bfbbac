#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image
short_description: Pull, load or remove images of the bundled runtime
version_added: 0.1.0
description:
  - Makes an image present in the store of Berth's bundled runtime (pulled from a registry, or loaded from an archive),
    or absent.
  - The task reports a change only when the local image really changed, that is when the tag (or digest) now names an
    image with another ID than before, or no longer names one.
  - Check mode predicts exactly without downloading any layer. With O(pull=always) it asks the registry which platform
    manifest the tag names now (a C(HEAD) request); when that is not the manifest the local image was pulled as, it
    reads the manifest (not its layers) to learn the image ID a pull would record.
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
      - Asks the registry (manifests only) when a pull would happen, so credentials and the image's existence are checked
        as in a real run.
  diff_mode:
    support: full
    details:
      - Before and after show whether the image exists, its ID and the digest of its platform manifest.
  idempotent:
    support: partial
    details:
      - With O(pull=always) a second run reports a change when the tag was moved in the registry in between.
options:
  name:
    description:
      - The image reference, as Docker writes it (V(nginx), V(nginx:1.25), V(registry.example.com:5000/team/app:v2),
        V(busybox@sha256:...)). Docker Hub names get C(docker.io/library/) and the tag C(latest) like in Docker.
      - With O(state=absent) it may also be an image ID (or a unique prefix of one).
    type: str
    required: true
  tag:
    description:
      - The tag, or a digest V(sha256:...), when O(name) has none.
      - If O(name) already has a tag or digest, O(tag) must be left out or be the same.
    type: str
  state:
    description:
      - V(present) pulls the image when O(pull) says so; V(absent) removes the tag (the image and its unused layers go
        with its last tag).
    type: str
    choices: [present, absent]
    default: present
  pull:
    description:
      - V(missing) pulls only when no local image has the reference (or none of O(platform) when it is given).
      - V(always) asks the registry every time and pulls when the tag names another image there.
    type: str
    choices: [missing, always]
    default: missing
  source:
    description:
      - Where the image comes from. V(pull) asks the registry (see O(pull)); V(load) reads the archive O(load_path).
      - With V(load) the task changes the image only when the archive's image for O(name) has another ID than the local
        one; O(pull) and the registry options are not used.
    type: str
    choices: [pull, load]
    default: pull
  load_path:
    description:
      - The archive to load with O(source=load), written by C(berth save), C(docker save), C(skopeo copy ...
        oci-archive:) or C(skopeo copy ... docker-archive:).
      - The image named O(name) in the archive is used; an archive of a single image may leave it unnamed (it is then
        tagged O(name)).
      - Every blob is checked against its digest and every layer against the image config when it is loaded.
    type: path
  platform:
    description:
      - The platform to pull from a multi-platform image, as C(OS/ARCH[/VARIANT]) (V(linux/arm64)). Default the
        host's.
    type: str
  force:
    description:
      - With O(state=absent), remove the tags of an image even when containers use it (the image itself stays until
        they are removed). Without it, an image used by a container is an error.
    type: bool
    default: false
notes:
  - Layers are downloaded in parallel (C(max-concurrent-downloads) of the configuration file, default 3) and every blob is
    verified against its digest and every layer against the image config's C(diff_id) before it is used.
seealso:
  - module: berth.containers.image_info
  - name: Docker's image reference grammar
    description: How names, tags and digests are written.
    link: https://docs.docker.com/reference/cli/docker/image/tag/
"""

EXAMPLES = r"""
- name: Pull nginx once (later runs change nothing)
  berth.containers.image:
    name: nginx
    tag: "1.25"

- name: Follow a moving tag, with credentials
  berth.containers.image:
    name: registry.example.com/team/app:stable
    pull: always
    username: deploy
    password: "{{ registry_password }}"

- name: An arm64 image through a mirror, using another runtime configuration
  berth.containers.image:
    name: busybox
    platform: linux/arm64
    registry_mirrors:
      - https://mirror.example.com
    config: /etc/berth/daemon.json

- name: Load an image on an air-gapped host (changes nothing when it is already there)
  berth.containers.image:
    name: registry.example.com/team/app:v2
    source: load
    load_path: /srv/images/app-v2.tar

- name: Remove an image
  berth.containers.image:
    name: nginx:1.25
    state: absent
"""

RETURN = r"""
image:
  description:
    - The image's inspect data (like C(docker image inspect)) after the run; empty when it is absent, or in check mode
      when it would be pulled.
  returned: always
  type: dict
  sample:
    Id: sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6
    RepoTags: ["nginx:latest"]
    RepoDigests: ["docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"]
    Architecture: amd64
    Os: linux
    Size: 142000000
    Config: {Cmd: ["nginx", "-g", "daemon off;"]}
    RootFS: {Type: layers, Layers: ["sha256:..."]}
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["Pulled image docker.io/library/nginx:latest"]
"""

from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.module_options import (
    REGISTRY_ARGUMENT_SPEC,
    REGISTRY_REQUIRED_TOGETHER,
    RUNTIME_ARGUMENT_SPEC,
    load_config,
    registry_options,
)
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument
from ansible_collections.berth.containers.plugins.module_utils.runtime.reference import parse as parse_reference


def reference_text(name: str, tag: Optional[str]) -> str:
    """*name* with *tag* (a tag or ``sha256:...`` digest) applied; a different tag already in *name* is an error."""
    if not tag:
        return name
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        return f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
    reference = parse_reference(name)
    agrees = reference.digest == tag if tag.startswith("sha256:") else not reference.digest and reference.tag == tag
    if not agrees:
        raise InvalidArgument(f"name {name} already names a tag or digest other than {tag}; leave tag out")
    return name


def image_state(record: Any) -> Dict[str, Any]:
    """The diff's view of an image: whether it exists, its ID and platform manifest digest."""
    if record is None:
        return {"exists": False}
    return {"exists": True, "id": record.id, "digest": record.manifest}


class ImageManager:
    """Brings one image reference to the requested state."""

    def __init__(self, module: AnsibleModule) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images

        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.name = reference_text(self.params["name"], self.params["tag"])
        self.images = Images(load_config(self.params))

    def run(self) -> Dict[str, Any]:
        if self.params["state"] == "absent":
            return self.absent()
        return self.present()

    def present(self) -> Dict[str, Any]:
        platform = self.params["platform"]
        loading = self.params["source"] == "load"
        if loading:
            path = self.params["load_path"]
            if self.check_mode:
                plan = self.images.plan_load(path, self.name, platform)
            else:
                plan = self.images.ensure_loaded(path, self.name, platform)
        else:
            options, policy = registry_options(self.params), self.params["pull"]
            if self.check_mode:
                plan = self.images.plan_pull(self.name, options, platform, policy)
            else:
                plan = self.images.ensure(self.name, options, platform, policy)
        display = str(plan.reference)
        actions: List[str] = []
        if plan.changed:
            actions.append(
                f"Loaded image {display} from {self.params['load_path']}" if loading else f"Pulled image {display}"
            )
        elif plan.pull and not loading:
            actions.append(f"Checked {display} in the registry: up to date")
        after = {"exists": True, "id": plan.image_id, "digest": plan.digest}
        image: Dict[str, Any] = {}
        if not (self.check_mode and plan.changed):
            image = self.images.inspect(plan.image_id or display)
        return {
            "changed": plan.changed,
            "actions": actions,
            "image": image,
            "diff": {"before": image_state(plan.before), "after": after},
        }

    def absent(self) -> Dict[str, Any]:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

        runtime = Runtime(self.images.config)
        record = self.images.find(self.name)
        result: Dict[str, Any] = {
            "changed": record is not None,
            "actions": [],
            "image": {},
            "diff": {"before": image_state(record), "after": {"exists": False}},
        }
        if record is None:
            return result
        users = runtime.containers_using_image
        force = self.params["force"]
        if self.check_mode:
            result["actions"] = self.images.plan_remove(self.name, users, force).lines()
        else:
            result["actions"] = self.images.remove(self.name, users, force)
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "tag": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "pull": {"type": "str", "choices": ["missing", "always"], "default": "missing"},
            "source": {"type": "str", "choices": ["pull", "load"], "default": "pull"},
            "load_path": {"type": "path"},
            "platform": {"type": "str"},
            "force": {"type": "bool", "default": False},
            **RUNTIME_ARGUMENT_SPEC,
            **REGISTRY_ARGUMENT_SPEC,
        },
        required_together=REGISTRY_REQUIRED_TOGETHER,
        required_if=[("source", "load", ["load_path"])],
        supports_check_mode=True,
    )
    finish(module, ImageManager)


if __name__ == "__main__":
    main()
