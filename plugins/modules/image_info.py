#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: image_info
short_description: Inspect the images of the bundled runtime
version_added: 0.1.0
description:
  - Returns the inspect data (like C(docker image inspect)) of some or all images in the store of Berth's bundled
    runtime, and optionally their history (like C(docker history)).
  - Reads the local store only; it never contacts a registry and never changes anything.
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
      - Image references (V(nginx), V(busybox:1.36), V(repo@sha256:...)) or image IDs (or unique prefixes) to inspect.
      - When not set, every image in the store is returned, newest first.
      - Names that match no image are left out of RV(images) and listed in RV(missing).
    type: list
    elements: str
  history:
    description:
      - Add each image's history (newest first, as C(docker history) shows it) under C(History).
    type: bool
    default: false
seealso:
  - module: berth.containers.image
"""

EXAMPLES = r"""
- name: Inspect two images
  berth.containers.image_info:
    name:
      - nginx
      - busybox:latest
  register: result

- name: Show the command of each layer of nginx
  berth.containers.image_info:
    name: nginx
    history: true
  register: nginx_info

- name: Every image in the store
  berth.containers.image_info:
  register: all_images
"""

RETURN = r"""
images:
  description:
    - Inspect data of each image found, in the order of O(name) (each image once), or of every image newest first.
    - With O(history=true) each has a C(History) list of C(created), C(created_by), C(comment), C(author), C(size),
      C(empty_layer) and C(id) (the image ID on the newest entry, C(<missing>) on the others, like Docker).
  returned: always
  type: list
  elements: dict
  sample:
    - Id: sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6
      RepoTags: ["nginx:latest"]
      Os: linux
      Architecture: amd64
      Size: 142000000
missing:
  description: The names given in O(name) that match no image.
  returned: always
  type: list
  elements: str
  sample: ["redis:7"]
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.module_options import RUNTIME_ARGUMENT_SPEC, load_config
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import BerthError


class ImageInfo:
    """Looks images up in the local store."""

    def __init__(self, module: AnsibleModule) -> None:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images

        self.params = module.params
        self.images = Images(load_config(self.params))

    def run(self) -> Dict[str, Any]:
        names = self.params["name"]
        missing: List[str] = []
        if names is None:
            ids = [record.id for record, _tags in self.images.list()]
        else:
            ids = []
            for name in names:
                record = self.images.find(name)
                if record is None:
                    missing.append(name)
                elif record.id not in ids:
                    ids.append(record.id)
        found = []
        for image_id in ids:
            data = self.images.inspect(image_id)
            if self.params["history"]:
                data["History"] = self.images.history(image_id)
            found.append(data)
        return {"changed": False, "images": found, "missing": missing}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "list", "elements": "str"},
            "history": {"type": "bool", "default": False},
            **RUNTIME_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    try:
        result = ImageInfo(module).run()
    except BerthError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
