#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_commit
short_description: Make a new image from a container's changes (bundled runtime)
version_added: 0.1.0
description:
  - Turns the changes a container of Berth's bundled runtime made to its file system (its writable overlay layer) into
    a new image, like C(docker commit), and tags it O(name). The new image is the container's image plus one layer
    (whiteouts, opaque directories, hard links, owners, modes and extended attributes kept), with the container's
    image configuration, changed by O(changes), and a history entry whose comment is O(comment).
  - Mount points the runtime itself created in the container (for C(/etc/hosts), C(/etc/hostname),
    C(/etc/resolv.conf), volumes, tmpfs mounts, C(/proc), C(/sys), C(/dev)) are not part of the changes when the image
    did not have them.
  - The configuration is the image's (with O(changes)), not what the container was started with (its environment
    or command); write those as O(changes) to keep them.
  - The task changes nothing when O(name) already names the image this commit would make, that is the container's
    image plus a layer with the same content (the same C(diff_id)) and an equal configuration (the same O(changes),
    O(author) and O(comment)), in the same O(format), apart from the creation times. So a container left untouched
    since its last commit to the tag is not committed again; any change to its files (even a touched mtime), to the
    options, or a container created from another image makes a new image.
author:
  - Berth maintainers (@berth-containers)
extends_documentation_fragment:
  - berth.containers.runtime
  - berth.containers.attributes
  - berth.containers.attributes.ACTIONGROUP_CONTAINERS
attributes:
  check_mode:
    support: full
    details:
      - Reads the container's changes and computes their C(diff_id) without storing anything, so the prediction is
        exact. With O(pause=true) a running container is paused for the read, as in a real run.
      - The ID of an image that would be made is not known in check mode (it depends on the time of the commit).
  diff_mode:
    support: full
    details:
      - Before and after show whether the tag exists, the image ID it names and the C(diff_id) of the committed layer.
  idempotent:
    support: full
    details:
      - As long as the container's files do not change in between. A container that keeps writing (logs, caches,
        pid files) makes a new image at each run, which is what it should.
options:
  container:
    description:
      - The container to commit, by name or ID (or a unique ID prefix).
    type: str
    required: true
  name:
    description:
      - The repository of the new image, as Docker writes it (V(mysite), V(registry.example.com:5000/team/mysite)),
        optionally with its tag (V(mysite:v1)).
    type: str
    required: true
    aliases: [repository]
  tag:
    description:
      - The tag, when O(name) has none. Default V(latest).
      - If O(name) already has a tag, O(tag) must be left out or be the same.
    type: str
  comment:
    description:
      - The commit message, which becomes the comment of the new history entry (C(docker commit -m)).
      - Named C(comment) because Ansible reserves C(message) for itself.
    type: str
    default: ""
  author:
    description:
      - The author of the new image (C(docker commit -a)), for example V(Jane Doe <jane@example.com>).
    type: str
    default: ""
  changes:
    description:
      - Dockerfile instructions applied to the image's configuration, in order (C(docker commit -c)).
      - Supported are C(CMD), C(ENTRYPOINT), C(ENV), C(EXPOSE), C(LABEL), C(USER) and C(WORKDIR), in Dockerfile
        syntax, for example V(CMD ["nginx", "-g", "daemon off;"]) (JSON form) or V(CMD nginx -g 'daemon off;')
        (shell form, run by C(/bin/sh -c)). Other instructions are refused.
    type: list
    elements: str
    default: []
  pause:
    description:
      - Pause (freeze) a running container while its changes are read, so the layer is one consistent moment, like
        C(docker commit). With V(false) the container keeps running; a file it changes during the read fails the task.
    type: bool
    default: true
  format:
    description:
      - The manifest format of the new image, V(oci) or V(docker) (Docker schema2).
    type: str
    choices: [oci, docker]
    default: oci
seealso:
  - module: berth.containers.image_push
  - module: berth.containers.container
  - name: docker commit
    description: The command this module follows.
    link: https://docs.docker.com/reference/cli/docker/container/commit/
"""

EXAMPLES = r"""
- name: Keep the page written into the web container as an image, and serve it by default
  berth.containers.image_commit:
    container: web
    name: mysite
    tag: v1
    comment: custom page
    changes:
      - CMD ["nginx", "-g", "daemon off;"]

- name: Commit with an author, an environment variable and a port, without pausing the container
  berth.containers.image_commit:
    container: builder
    name: registry.example.com:5000/team/tools:2024.1
    author: Jane Doe <jane@example.com>
    changes:
      - ENV MODE=production
      - EXPOSE 8080/tcp
    pause: false

- name: Then push it
  berth.containers.image_push:
    name: registry.example.com:5000/team/tools:2024.1
"""

RETURN = r"""
id:
  description:
    - The ID of the image the tag names after the run.
    - V(null) in check mode when a new image would be made (its ID depends on the time of the commit).
  returned: always
  type: str
  sample: sha256:ad514dac3e4967d23d1948ca77f49a5bdad973b4b2a699cb6b90fe7600039dec
tag:
  description: The full reference of the new image.
  returned: always
  type: str
  sample: docker.io/library/mysite:v1
diff_id:
  description:
    - The C(diff_id) (sha256 of the uncompressed layer) of the container's changes.
    - When the container has no changes it is the empty layer's, and the new image has no new layer (its history entry
      says C(empty_layer)).
  returned: always
  type: str
  sample: sha256:aa63057f6320aa76e3c90282c7f4739d9a6603db859752f982649401a296eac9
empty_layer:
  description: Whether the container had no changes, so that the new image adds no layer.
  returned: always
  type: bool
runtime_paths:
  description: Paths (relative to the root) the runtime created in the container, left out of the commit.
  returned: always
  type: list
  elements: str
  sample: ["etc/hosts"]
image:
  description:
    - The image's inspect data (like C(docker image inspect)) after the run; empty in check mode when a new image
      would be made.
  returned: always
  type: dict
"""

from typing import Any, Dict, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.module_options import RUNTIME_ARGUMENT_SPEC, load_config
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument
from ansible_collections.berth.containers.plugins.module_utils.runtime.layerdiff import EMPTY_LAYER_DIFF_ID


def target_reference(name: str, tag: Optional[str]) -> str:
    """``REPOSITORY:TAG`` from *name* and *tag*; a different tag already in *name*, or a digest, is an error."""
    from ansible_collections.berth.containers.plugins.module_utils.runtime.reference import parse as parse_reference

    if "@" in name or (tag or "").startswith("sha256:"):
        raise InvalidArgument(f"commit to a tag, not a digest: {name} {tag or ''}".strip())
    if not tag:
        return str(parse_reference(name))
    if ":" not in name.rsplit("/", 1)[-1]:
        return str(parse_reference(f"{name}:{tag}"))
    reference = parse_reference(name)
    if reference.tag != tag:
        raise InvalidArgument(f"name {name} already names a tag other than {tag}; leave tag out")
    return str(reference)


def layer_of(config: Optional[Dict[str, Any]]) -> Optional[str]:
    """The diff_id a committed config's last history entry stands for (the empty layer's for an empty one)."""
    if not config:
        return None
    history = config.get("history") or []
    if history and history[-1].get("empty_layer"):
        return EMPTY_LAYER_DIFF_ID
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    return diff_ids[-1] if diff_ids else None


class ImageCommitter:
    """Commits one container to one tag when the tag does not already name that very commit."""

    def __init__(self, module: AnsibleModule) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

        self.module = module
        self.params = module.params
        self.runtime = Runtime(load_config(self.params))

    def run(self) -> Dict[str, Any]:
        from ansible_collections.berth.containers.plugins.module_utils.runtime import commit

        params = self.params
        target = target_reference(params["name"], params["tag"])
        container = self.runtime.get(params["container"])
        options = {
            "message": params["comment"] or "",
            "author": params["author"] or "",
            "changes": params["changes"] or [],
            "pause": params["pause"],
            "fmt": params["format"],
        }
        plan = commit.plan_commit(self.runtime, container, target, **options)
        before_id = plan.before.id if plan.before else None
        result: Dict[str, Any] = {
            "changed": plan.changed,
            "id": before_id,
            "tag": target,
            "diff_id": plan.diff_id,
            "empty_layer": plan.empty_layer,
            "runtime_paths": plan.excluded,
            "image": {},
        }
        if plan.changed:
            result["id"] = None
            if not self.module.check_mode:
                done = commit.commit(self.runtime, container, target, **options)
                result.update(
                    id=done.image.id, diff_id=done.diff_id, empty_layer=done.empty_layer, runtime_paths=done.excluded
                )
        if result["id"]:
            result["image"] = self.runtime.images.inspect(result["id"])
        result["diff"] = {
            "before": {"exists": plan.before is not None, "id": before_id, "diff_id": layer_of(plan.before_config)},
            "after": {"exists": True, "id": result["id"], "diff_id": result["diff_id"]},
        }
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "name": {"type": "str", "required": True, "aliases": ["repository"]},
            "tag": {"type": "str"},
            "comment": {"type": "str", "default": ""},
            "author": {"type": "str", "default": ""},
            "changes": {"type": "list", "elements": "str", "default": []},
            "pause": {"type": "bool", "default": True},
            "format": {"type": "str", "choices": ["oci", "docker"], "default": "oci"},
            **RUNTIME_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    finish(module, ImageCommitter)


if __name__ == "__main__":
    main()
