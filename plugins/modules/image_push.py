#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_push
short_description: Push an image of the bundled runtime to a registry
version_added: 0.1.0
description:
  - Pushes a local image of Berth's bundled runtime to a registry, under its own name or O(target).
  - Blobs the repository already has are not sent (a C(HEAD) request tells); blobs the image was pulled with from
    another repository of the same registry are mounted from there when the registry allows it; the rest is uploaded
    (in chunks when large). The manifest goes last.
  - The task reports a change only when the registry's digest for the tag changes, that is when the tag did not name
    exactly this manifest before.
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
      - Asks the registry (a C(HEAD) of the tag) and builds the manifest locally, so the prediction is exact; nothing is
        sent.
  diff_mode:
    support: full
    details:
      - Before and after show the digest the tag names in the registry.
  idempotent:
    support: full
options:
  name:
    description:
      - The local image (a name, C(name:tag), or an image ID).
    type: str
    required: true
  target:
    description:
      - Where to push, as C(registry/repository:tag). Default O(name).
      - Registry mirrors are never used for pushes (as with Docker).
    type: str
  format:
    description:
      - The manifest format to push. By default the image keeps the manifest it was pulled or loaded with (its digest
        does not change); V(oci) or V(docker) (Docker schema2) convert it when it is in the other format.
    type: str
    choices: [oci, docker]
seealso:
  - module: berth.containers.image
"""

EXAMPLES = r"""
- name: Push a committed image to the team's registry
  berth.containers.image_push:
    name: mysite:v1
    target: registry.example.com:5000/team/mysite:v1
    username: deploy
    password: "{{ registry_password }}"

- name: Copy nginx into a local registry in Docker's format
  berth.containers.image_push:
    name: nginx
    target: 127.0.0.1:5000/mirror/nginx:latest
    format: docker
"""

RETURN = r"""
digest:
  description: The digest of the manifest the tag names after the run (or would name, in check mode).
  returned: always
  type: str
  sample: sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31
target:
  description: The full reference pushed to.
  returned: always
  type: str
  sample: registry.example.com:5000/team/mysite:v1
uploaded:
  description: Blobs uploaded (empty in check mode and when nothing changed).
  returned: always
  type: list
  elements: str
mounted:
  description: Blobs mounted from another repository of the registry.
  returned: always
  type: list
  elements: str
existing:
  description: Blobs the repository already had.
  returned: always
  type: list
  elements: str
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.module_options import (
    REGISTRY_ARGUMENT_SPEC,
    REGISTRY_REQUIRED_TOGETHER,
    RUNTIME_ARGUMENT_SPEC,
    load_config,
    registry_options,
)
from ansible_collections.berth.containers.plugins.module_utils.module_run import finish


class ImagePusher:
    """Pushes one local image when the registry's tag does not already name its manifest."""

    def __init__(self, module: AnsibleModule) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images

        self.module = module
        self.params = module.params
        self.images = Images(load_config(self.params))

    def run(self) -> Dict[str, Any]:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.digest import sha256_bytes

        name, fmt = self.params["name"], self.params["format"]
        options = registry_options(self.params)
        reference, manifest, _media_type = self.images.push_plan(name, self.params["target"], fmt)
        target = str(reference)
        before = self.images.registry_tag_digest(target, options)
        after = sha256_bytes(manifest)
        result: Dict[str, Any] = {
            "changed": before != after,
            "digest": after,
            "target": target,
            "uploaded": [],
            "mounted": [],
            "existing": [],
            "diff": {"before": {"digest": before}, "after": {"digest": after}},
        }
        if result["changed"] and not self.module.check_mode:
            pushed = self.images.push(name, target, options, fmt)
            result.update(
                digest=pushed.digest, uploaded=pushed.uploaded, mounted=pushed.mounted, existing=pushed.existing
            )
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "target": {"type": "str"},
            "format": {"type": "str", "choices": ["oci", "docker"]},
            **RUNTIME_ARGUMENT_SPEC,
            **REGISTRY_ARGUMENT_SPEC,
        },
        required_together=REGISTRY_REQUIRED_TOGETHER,
        supports_check_mode=True,
    )
    finish(module, ImagePusher)


if __name__ == "__main__":
    main()
