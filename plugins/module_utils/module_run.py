# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every module of the collection ends its run.

A module builds its argument spec, then hands a manager class to :func:`finish`:
the manager does the work in ``run()`` and returns the result. Errors the
runtime or the engine helpers raise on purpose (:class:`BerthError`, and
``ValueError`` for a bad combination of options) become ``fail_json`` with
their message; the manager's ``warnings`` become Ansible warnings; ``diff``
is returned only with ``--diff``; a result with ``failed: true`` (a command
that ran but failed) fails the task with all its data.
"""

from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import BerthError


def finish(module: AnsibleModule, manager_class: Callable[[AnsibleModule], Any]) -> None:
    """Run ``manager_class(module).run()`` and end the module with its result."""
    try:
        manager = manager_class(module)
        result = manager.run()
    except (BerthError, ValueError) as exc:
        module.fail_json(msg=str(exc))
        return
    for warning in getattr(manager, "warnings", ()):
        module.warn(warning)
    if not module._diff:
        result.pop("diff", None)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
