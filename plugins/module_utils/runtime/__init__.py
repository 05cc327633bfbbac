# Berth's bundled container runtime.  Pure Python (requests loaded
# lazily), importable three ways with the same files: as
# ansible_collections.berth.containers.plugins.module_utils.runtime (modules,
# tests), as the top-level package ``runtime`` (bin/berth, the monitor), and
# from a copy installed on a host by the ``runtime`` role.  Modules inside
# import each other relatively.  Keep this file empty of imports: `berth ps`
# must start fast.
