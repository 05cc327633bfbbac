# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options shared by the modules that drive the bundled runtime (images and containers)."""


class ModuleDocFragment:
    # Every runtime module: which host configuration (data root, mirrors...) to use.
    DOCUMENTATION = r"""
options:
  config:
    description:
      - The runtime's configuration file, with the keys of Docker's C(daemon.json) (C(data-root), C(exec-root),
        C(registry-mirrors), C(insecure-registries), C(max-concurrent-downloads), ...).
      - When not set, the file named by the E(BERTH_CONFIG) environment variable of the module's process is used
        (set it with the task's C(environment) keyword), else C(/etc/berth/daemon.json).
      - A missing file means Docker's defaults (data root C(/var/lib/berth)).
    type: path
requirements:
  - Python 3.9 or newer on the managed host.
  - Root on the managed host (the image store is root's).
"""

    # Modules that talk to registries.
    REGISTRY = r"""
options:
  username:
    description:
      - User name for the registry of the image. When not set, credentials come from O(auth_file) (or the default
        auth files) for the registry's host; without any, access is anonymous.
      - Requires O(password).
    type: str
  password:
    description:
      - Password (or token) for O(username).
    type: str
  auth_file:
    description:
      - A C(~/.docker/config.json)-style file of registry credentials (C(auths.<host>.auth)).
      - When not set, C($DOCKER_CONFIG/config.json) (default C(~/.docker/config.json)),
        C($XDG_RUNTIME_DIR/containers/auth.json) and C(~/.config/containers/auth.json) of the user the module runs as
        are searched, in that order.
    type: path
  validate_certs:
    description:
      - Verify the TLS certificates of registries. Turn this off only for a registry you trust on a network you trust;
        listing the registry in C(insecure-registries) of the configuration file is the lasting way.
    type: bool
    default: true
    aliases: [tls_verify]
  ca_path:
    description:
      - A CA certificate file, or a directory of C(*.crt) files, to verify registries with (in addition to the
        system's roots).
      - When not set, C(/etc/berth/certs.d/<host:port>/*.crt) and C(/etc/docker/certs.d/<host:port>/*.crt) are used.
    type: path
  registry_mirrors:
    description:
      - Mirror URLs for Docker Hub images, tried in order before Docker Hub itself, instead of C(registry-mirrors)
        of the configuration file. Mirrors never apply to images of other registries (as with Docker).
      - An empty list turns the configured mirrors off for this task.
    type: list
    elements: str
requirements:
  - The Python library C(requests) on the managed host.
"""
