"""cgroup layout detection and the v1/v2 file writes, against fake trees.

This host's cgroup v2 hierarchy has no usable controllers, so the v2 code
path (subtree_control, memory.max, cpu.max, cpu.weight, pids.max, freeze,
kill, removal) is exercised on a directory tree laid out like cgroup2fs.
"""

import os
import signal

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import cgroups
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import CgroupError, InvalidArgument

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
HYBRID_CGROUP = """\
9:name=systemd:/user.slice/session-1.scope
8:pids:/user.slice
6:freezer:/
4:memory:/process_api/abc
1:cpuacct,cpu:/user.slice
0::/user.slice/session-1.scope
"""
UNIFIED_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
UNIFIED_CGROUP = "0::/system.slice/ssh.service\n"


def test_hybrid_layout():
    layout = cgroups.layout_from(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert layout.version == 1
    assert layout.key_for("cpuacct") == "cpuacct,cpu"
    assert layout.mounts["cpuacct,cpu"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.mounts["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert layout.unified == "/sys/fs/cgroup/unified"
    assert layout.directory("memory", "/process_api/abc/berth/x") == "/sys/fs/cgroup/memory/process_api/abc/berth/x"


def test_unified_layout():
    layout = cgroups.layout_from(UNIFIED_MOUNTINFO, UNIFIED_CGROUP)
    assert layout.version == 2
    assert layout.own == {"": "/system.slice/ssh.service"}


def test_no_cgroup_mounted():
    with pytest.raises(CgroupError, match="no cgroup filesystem"):
        cgroups.layout_from("22 27 0:21 / /proc rw - proc proc rw\n", "0::/\n")


def test_mount_root_is_stripped():
    layout = cgroups.Layout(1, {"memory": "/sys/fs/cgroup/memory"}, {"memory": "/ctr/a"}, {"memory": "/ctr"})
    assert layout.directory("memory", "/ctr/a/berth/x") == "/sys/fs/cgroup/memory/a/berth/x"


def test_this_host_is_detected():
    layout = cgroups.detect()
    assert layout.version in (1, 2)
    assert layout.mounts


@pytest.mark.parametrize(
    ("shares", "weight"), [(2, 1), (1024, 100), (262144, 10000), (1, 1), (512, 59), (2048, 174), (10**6, 10000)]
)
def test_cpu_weight_conversion(shares, weight):
    assert cgroups.cpu_weight_from_shares(shares) == weight


@pytest.mark.parametrize(
    "resources",
    [
        cgroups.Resources(memory=1024),
        cgroups.Resources(memory=64 << 20, memory_swap=32 << 20),
        cgroups.Resources(memory_swap=64 << 20),
        cgroups.Resources(cpu_shares=1),
        cgroups.Resources(cpu_period=10),
        cgroups.Resources(cpu_quota=10),
    ],
)
def test_invalid_resources(resources):
    with pytest.raises(InvalidArgument):
        resources.validate()


def test_cpus_to_quota():
    resources = cgroups.Resources.from_cpus(1.5, memory=64 << 20)
    assert (resources.cpu_quota, resources.cpu_period, resources.memory) == (150000, 100000, 64 << 20)
    with pytest.raises(InvalidArgument):
        cgroups.Resources.from_cpus(0)


def test_docker_default_swap_is_twice_memory():
    assert cgroups.Resources(memory=100 << 20).effective_swap == 200 << 20
    assert cgroups.Resources(memory=100 << 20, memory_swap=-1).effective_swap == -1
    assert cgroups.Resources().effective_swap is None


# -- cgroup v2 on a fake cgroup2 tree ------------------------------------------------------
@pytest.fixture
def v2_tree(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    (root / "cgroup.subtree_control").write_text("")
    return cgroups.Layout(2, {"": str(root)}, {"": "/system.slice/ssh.service"}, {"": "/"})


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_v2_create_enables_controllers_top_down_and_writes_limits(v2_tree):
    root = v2_tree.mounts[""]
    resources = cgroups.Resources(
        memory=64 << 20, cpu_quota=50000, cpu_period=100000, cpu_shares=512, pids_limit=32, memory_swap=96 << 20
    )
    leaf = os.path.join(root, "berth", "c1")
    os.makedirs(leaf)
    open(os.path.join(leaf, "memory.swap.max"), "w").close()
    group = cgroups.Cgroup.create("c1", resources, layout=v2_tree)
    assert group.directories == {"": leaf}
    assert _read(os.path.join(root, "cgroup.subtree_control")) == "+cpu +memory +pids"
    assert _read(os.path.join(root, "berth", "cgroup.subtree_control")) == "+cpu +memory +pids"
    assert not os.path.exists(os.path.join(leaf, "cgroup.subtree_control")), "no internal processes: leaf only"
    assert _read(os.path.join(leaf, "memory.max")) == str(64 << 20)
    assert _read(os.path.join(leaf, "memory.swap.max")) == str(32 << 20)
    assert _read(os.path.join(leaf, "cpu.max")) == "50000 100000"
    assert _read(os.path.join(leaf, "cpu.weight")) == "59"
    assert _read(os.path.join(leaf, "pids.max")) == "32"
    assert group.join_files() == [os.path.join(leaf, "cgroup.procs")]


def test_v2_does_not_rewrite_enabled_controllers(v2_tree):
    root = v2_tree.mounts[""]
    with open(os.path.join(root, "cgroup.subtree_control"), "w") as handle:
        handle.write("cpu memory pids")
    group = cgroups.Cgroup.create("c2", cgroups.Resources(pids_limit=0), layout=v2_tree, parent="/custom")
    assert _read(os.path.join(root, "cgroup.subtree_control")) == "cpu memory pids"
    assert _read(os.path.join(group.directories[""], "pids.max")) == "max"
    assert group.directories[""] == os.path.join(root, "custom", "c2")


def test_v2_relative_parent_nests_under_the_caller(v2_tree):
    group = cgroups.Cgroup.create("c3", layout=v2_tree, parent="sub")
    assert group.directories[""] == os.path.join(v2_tree.mounts[""], "system.slice/ssh.service/sub/c3")


def test_v2_unlimited_cpu_and_swap(v2_tree):
    leaf = os.path.join(v2_tree.mounts[""], "berth", "c4")
    os.makedirs(leaf)
    open(os.path.join(leaf, "memory.swap.max"), "w").close()
    group = cgroups.Cgroup.create(
        "c4", cgroups.Resources(cpu_period=20000, memory=10 << 20, memory_swap=-1), layout=v2_tree
    )
    assert _read(os.path.join(leaf, "cpu.max")) == "max 20000"
    assert _read(os.path.join(leaf, "memory.swap.max")) == "max"
    assert group.version == 2


def test_v2_refuses_a_cgroup_with_processes(v2_tree):
    leaf = os.path.join(v2_tree.mounts[""], "berth", "busy")
    os.makedirs(leaf)
    with open(os.path.join(leaf, "cgroup.procs"), "w") as handle:
        handle.write("4242\n")
    with pytest.raises(CgroupError, match="already holds processes"):
        cgroups.Cgroup.create("busy", layout=v2_tree)


def test_v2_freeze_thaw_and_events(v2_tree):
    group = cgroups.Cgroup.create("c5", layout=v2_tree)
    leaf = group.directories[""]
    with open(os.path.join(leaf, "cgroup.events"), "w") as handle:
        handle.write("populated 1\nfrozen 1\n")
    group.freeze(timeout=0.5)
    assert _read(os.path.join(leaf, "cgroup.freeze")) == "1"
    with pytest.raises(CgroupError, match="did not thaw"):
        group.thaw(timeout=0.05)
    assert _read(os.path.join(leaf, "cgroup.freeze")) == "0"


def test_v2_kill_uses_cgroup_kill(v2_tree):
    group = cgroups.Cgroup.create("c6", layout=v2_tree)
    leaf = group.directories[""]
    open(os.path.join(leaf, "cgroup.kill"), "w").close()
    group.kill(signal.SIGKILL, timeout=0.1)
    assert _read(os.path.join(leaf, "cgroup.kill")) == "1"


def test_v2_stats_and_oom(v2_tree):
    group = cgroups.Cgroup.create("c7", layout=v2_tree)
    leaf = group.directories[""]
    files = {
        "memory.current": "10485760\n",
        "memory.stat": "anon 1\ninactive_file 1048576\n",
        "memory.max": "67108864\n",
        "cpu.stat": "usage_usec 2500\nnr_throttled 7\n",
        "pids.current": "3\n",
        "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    }
    for name, text in files.items():
        with open(os.path.join(leaf, name), "w") as handle:
            handle.write(text)
    assert group.stats() == cgroups.Stats(9437184, 67108864, 2500000, 3, 1)
    assert group.oom_kills() == 1
    assert group.cpu_throttled() == 7


def test_v2_remove_takes_sub_cgroups_first(v2_tree):
    group = cgroups.Cgroup.create("c8", layout=v2_tree)
    leaf = group.directories[""]
    os.makedirs(os.path.join(leaf, "init.scope"))
    open(os.path.join(leaf, "init.scope", "cgroup.procs"), "w").close()
    group.remove(timeout=0.5)
    assert not os.path.exists(leaf)
    assert os.path.isdir(os.path.dirname(leaf)), "the shared parent stays"


def test_pids_include_sub_cgroups(v2_tree):
    group = cgroups.Cgroup.create("c9", layout=v2_tree)
    leaf = group.directories[""]
    os.makedirs(os.path.join(leaf, "a", "b"))
    for directory, pids in ((leaf, "1\n"), (os.path.join(leaf, "a", "b"), "7\n3\n")):
        with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
            handle.write(pids)
    assert group.pids() == [1, 3, 7]


# -- cgroup v1 on a fake hybrid tree -------------------------------------------------------
@pytest.fixture
def v1_tree(tmp_path):
    mounts = {}
    for key, name in (
        ("cpu,cpuacct", "cpu,cpuacct"),
        ("memory", "memory"),
        ("pids", "pids"),
        ("freezer", "freezer"),
        ("name=systemd", "systemd"),
        ("", "unified"),
    ):
        path = tmp_path / name
        path.mkdir()
        mounts[key] = str(path)
    own = dict.fromkeys(mounts, "/")
    own["memory"] = "/process_api/abc"
    return cgroups.Layout(1, mounts, own, dict.fromkeys(mounts, "/"))


def test_v1_create_nests_under_the_caller_and_writes_limits(v1_tree):
    memory_leaf = os.path.join(v1_tree.mounts["memory"], "process_api/abc/berth/c1")
    os.makedirs(memory_leaf)
    open(os.path.join(memory_leaf, "memory.memsw.limit_in_bytes"), "w").close()
    resources = cgroups.Resources.from_cpus(0.5, memory=64 << 20, cpu_shares=512, pids_limit=20)
    group = cgroups.Cgroup.create("c1", resources, layout=v1_tree)
    assert group.directories["memory"] == memory_leaf
    cpu = group.directories["cpu,cpuacct"]
    assert cpu == os.path.join(v1_tree.mounts["cpu,cpuacct"], "berth/c1")
    assert _read(os.path.join(memory_leaf, "memory.limit_in_bytes")) == str(64 << 20)
    assert _read(os.path.join(memory_leaf, "memory.memsw.limit_in_bytes")) == str(128 << 20)
    assert _read(os.path.join(cpu, "cpu.cfs_quota_us")) == "50000"
    assert _read(os.path.join(cpu, "cpu.cfs_period_us")) == "100000"
    assert _read(os.path.join(cpu, "cpu.shares")) == "512"
    assert _read(os.path.join(group.directories["pids"], "pids.max")) == "20"
    assert "name=systemd" not in group.directories
    assert group.main_directory == group.directories["pids"]


def test_v1_systemd_gets_its_own_named_and_unified_cgroups(v1_tree):
    group = cgroups.Cgroup.create("c2", layout=v1_tree, systemd=True)
    assert group.directories["name=systemd"] == os.path.join(v1_tree.mounts["name=systemd"], "berth/c2")
    assert group.directories[""] == os.path.join(v1_tree.mounts[""], "berth/c2")
    joins = group.join_files()
    assert len(joins) == 6
    assert os.path.join(group.directories[""], "cgroup.procs") in joins, "v2 has no tasks file"
    assert os.path.join(group.directories["name=systemd"], "tasks") in joins
    assert all(path.endswith("/tasks") for path in joins if not path.startswith(v1_tree.mounts[""] + "/"))


def test_v1_freeze_and_oom(v1_tree):
    group = cgroups.Cgroup.create("c3", layout=v1_tree)
    freezer = group.directories["freezer"]
    group.freeze(timeout=0.5)
    assert _read(os.path.join(freezer, "freezer.state")) == "FROZEN"
    with open(os.path.join(group.directories["memory"], "memory.oom_control"), "w") as handle:
        handle.write("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_kills() == 2


def test_v1_missing_memory_controller_is_a_clear_error(v1_tree):
    layout = cgroups.Layout(1, {"pids": v1_tree.mounts["pids"]}, {"pids": "/"})
    with pytest.raises(CgroupError, match="memory controller is not mounted"):
        cgroups.Cgroup.create("c4", layout=layout)


def test_creation_failure_removes_what_it_made(v1_tree):
    with pytest.raises(InvalidArgument):
        cgroups.Cgroup.create("c5", cgroups.Resources(memory=1), layout=v1_tree)
    assert not os.path.exists(os.path.join(v1_tree.mounts["pids"], "berth", "c5"))


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_bad_names(v1_tree, name):
    with pytest.raises(InvalidArgument):
        cgroups.Cgroup.create(name, layout=v1_tree)


def test_bad_parent(v1_tree):
    with pytest.raises(InvalidArgument):
        cgroups.Cgroup.create("x", layout=v1_tree, parent="../../escape")


def test_round_trip_through_state(v1_tree):
    group = cgroups.Cgroup.create("c6", layout=v1_tree)
    again = cgroups.Cgroup.from_dict(group.to_dict())
    assert again.directories == group.directories
    assert again.version == 1
    with pytest.raises(CgroupError):
        cgroups.Cgroup.from_dict({"version": 3, "directories": {}})
