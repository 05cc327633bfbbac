# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs and option handling shared by the runtime's modules.

The options are documented once, in ``plugins/doc_fragments/runtime.py``
(``berth.containers.runtime`` and ``berth.containers.runtime.REGISTRY``);
the specs here must stay equal to those fragments (validate-modules checks).
"""

from typing import TYPE_CHECKING, Any, Dict, List

from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config

if TYPE_CHECKING:
    from ansible_collections.berth.containers.plugins.module_utils.runtime.images import RegistryOptions

RUNTIME_ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = {
    "config": {"type": "path"},
}

REGISTRY_ARGUMENT_SPEC: Dict[str, Dict[str, Any]] = {
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "auth_file": {"type": "path"},
    "validate_certs": {"type": "bool", "default": True, "aliases": ["tls_verify"]},
    "ca_path": {"type": "path"},
    "registry_mirrors": {"type": "list", "elements": "str"},
}

REGISTRY_REQUIRED_TOGETHER: List[List[str]] = [["username", "password"]]


def load_config(params: Dict[str, Any]) -> runtime_config.DaemonConfig:
    """The host configuration the task names (``config``), else ``BERTH_CONFIG``, else the default file."""
    return runtime_config.load(params.get("config"))


def registry_options(params: Dict[str, Any]) -> "RegistryOptions":
    """How to reach registries, from the REGISTRY options of a module."""
    # Imported here: the container module first points the runtime at its lasting copy (lasting_runtime.py).
    from ansible_collections.berth.containers.plugins.module_utils.runtime.images import RegistryOptions

    return RegistryOptions(
        username=params.get("username"),
        password=params.get("password"),
        auth_file=params.get("auth_file"),
        validate_certs=params.get("validate_certs", True),
        ca_path=params.get("ca_path"),
        registry_mirrors=params.get("registry_mirrors"),
    )
