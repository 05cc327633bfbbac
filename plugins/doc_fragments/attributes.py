# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attribute descriptions shared by the collection's modules."""


class ModuleDocFragment:
    # The descriptions; a module adds its own support levels next to this.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and predict the change without modifying the target.
  diff_mode:
    description: Returns what changed (or would change in check mode) when run with C(--diff).
  idempotent:
    description:
      - When run twice in a row outside check mode with the same arguments, the second run reports no change.
      - This assumes the managed system did not change in between in a relevant way.
"""

    # For modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    ACTIONGROUP_CONTAINERS = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/berth.containers.containers) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - berth.containers.containers
"""
