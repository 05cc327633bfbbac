"""Root filesystem planning and in-root path resolution (no mounts: those are integration tests)."""

import os

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import libc, rootfs
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument
from ansible_collections.berth.containers.plugins.module_utils.runtime.rootfs import Mount, RootfsSpec


def _spec(lowers=("l/A", "l/B"), **kwargs):
    base = {"upper": "/c/upper", "work": "/c/work", "merged": "/c/merged", "lower_cwd": "/layers"}
    base.update(kwargs)
    return RootfsSpec(lowers=tuple(lowers), **base)


def test_overlay_data_with_hardening():
    data = rootfs.overlay_data(_spec(), ("index", "metacopy"))
    assert data == "lowerdir=l/A:l/B,upperdir=/c/upper,workdir=/c/work,index=off,metacopy=off"


def test_overlay_data_must_fit_one_page():
    lowers = [f"/var/lib/berth/layers/{'x' * 60}{number}/diff" for number in range(60)]
    with pytest.raises(InvalidArgument, match="more than one page"):
        rootfs.overlay_data(_spec(lowers))


@pytest.mark.parametrize("bad", ["a,b", "a:b", "", "a\\b"])
def test_overlay_paths_that_would_break_the_options(bad):
    with pytest.raises(InvalidArgument):
        rootfs.overlay_data(_spec([bad]))


def test_overlay_needs_a_layer():
    with pytest.raises(InvalidArgument, match="at least one"):
        rootfs.overlay_data(_spec([]))


def test_this_kernel_knows_the_hardening_options():
    assert set(rootfs.overlay_options_supported()) <= {"index", "redirect_dir", "metacopy"}


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["ro", "nosuid"], (libc.MS_RDONLY | libc.MS_NOSUID, 0, "")),
        (["size=64m", "mode=1777", "exec"], (0, libc.MS_NOEXEC, "size=64m,mode=1777")),
        (["noexec", "exec"], (0, libc.MS_NOEXEC, "")),
        (["rbind", "rprivate", "z"], (0, 0, "")),
    ],
)
def test_mount_flags(words, expected):
    assert rootfs.mount_flags(words) == expected


def test_mount_option_cannot_smuggle_more_options():
    with pytest.raises(InvalidArgument):
        rootfs.mount_flags(["size=1m,uid=0"])


@pytest.mark.parametrize(
    ("path", "clean"),
    [("/../../etc", "/etc"), ("/a/./b/../c", "/a/c"), ("//x//", "/x"), ("/..", "/")],
)
def test_destinations_cannot_climb_out(path, clean):
    """R8: an image volume like /../../etc stays inside the root."""
    assert rootfs.clean_destination(path) == clean


def test_relative_destination_is_refused():
    with pytest.raises(InvalidArgument, match="absolute"):
        rootfs.clean_destination("etc")


def test_systemd_commands():
    assert rootfs.is_systemd_command(["/lib/systemd/systemd", "--log-level=info"])
    assert rootfs.is_systemd_command(["/sbin/init"])
    assert not rootfs.is_systemd_command(["/bin/sh"])
    assert not rootfs.is_systemd_command([])


def test_plan_sorts_mounts_and_checks_them(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    plan = rootfs.plan(
        _spec(),
        mounts=[Mount("/a/b/c", source=str(source)), Mount("/a", type="tmpfs"), Mount("/../x", source=str(source))],
        etc_files={"/etc/hosts": str(hosts)},
    )
    assert [item.destination for item in plan.mounts] == ["/a", "/x", "/a/b/c"]
    assert plan.etc_files == [("/etc/hosts", str(hosts))]
    assert "/proc/kcore" in plan.masked_paths
    assert "/proc/sys" in plan.readonly_paths
    assert plan.rootfs_flags == libc.MS_NODEV
    assert plan.host_devices == []


def test_privileged_plan_lifts_masks_and_gets_devices():
    plan = rootfs.plan(_spec(), privileged=True)
    assert plan.masked_paths == []
    assert plan.readonly_paths == []
    assert plan.rootfs_flags == 0
    assert any(device[0] == "null" for device in plan.host_devices)


def test_systemd_plan_adds_tmpfs_unless_mounted(tmp_path):
    plan = rootfs.plan(_spec(), systemd=True, mounts=[Mount("/tmp", type="tmpfs")])
    assert plan.extra_tmpfs == ["/run", "/run/lock"]


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        (Mount("/x", source="relative"), "absolute host path"),
        (Mount("/x", source="/nonexistent/berth/source"), "does not exist"),
        (Mount("/x", type="nfs"), "not supported"),
        (Mount("/", type="tmpfs"), "root directory"),
        (Mount("x", type="tmpfs"), "absolute path"),
    ],
)
def test_bad_mounts(mount, message):
    with pytest.raises(InvalidArgument, match=message):
        rootfs.plan(_spec(), mounts=[mount])


def test_duplicate_destinations():
    with pytest.raises(InvalidArgument, match="duplicate"):
        rootfs.plan(_spec(), mounts=[Mount("/t", type="tmpfs"), Mount("/t/", type="tmpfs")])


def test_cgroup_plan_v1_only_joined_hierarchies():
    mounts = {
        "memory": "/sys/fs/cgroup/memory",
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "name=systemd": "/sys/fs/cgroup/systemd",
        "blkio": "/sys/fs/cgroup/blkio",
        "": "/sys/fs/cgroup/unified",
    }
    joined = ["memory", "cpu,cpuacct", "name=systemd", ""]
    plan, symlinks, v2 = rootfs.cgroup_mount_plan(1, mounts, joined, systemd=True)
    assert not v2
    by_name = {item.name: item for item in plan}
    assert set(by_name) == {"memory", "cpu,cpuacct", "systemd", "unified"}
    assert by_name["systemd"] == rootfs.CgroupMount("systemd", "cgroup", "none,name=systemd", True)
    assert by_name["unified"].writable
    assert not by_name["memory"].writable
    assert sorted(symlinks) == [("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")]


def test_cgroup_plan_v2():
    plan, symlinks, v2 = rootfs.cgroup_mount_plan(2, {"": "/sys/fs/cgroup"}, [""], systemd=False)
    assert v2
    assert symlinks == []
    assert plan == [rootfs.CgroupMount("", "cgroup2", "", False)]


def test_hosts_and_resolv_conf():
    hosts = rootfs.hosts_content("web", "10.89.0.5", [("db", "10.89.0.6")])
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert hosts.endswith("10.89.0.6\tdb\n10.89.0.5\tweb\n")
    host_resolv = "search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n"
    assert rootfs.resolv_conf_content(host_resolv, own_network=True) == "search lan\nnameserver 192.0.2.1\n"
    assert rootfs.resolv_conf_content(host_resolv, own_network=False) == host_resolv
    assert "nameserver 8.8.8.8" in rootfs.resolv_conf_content("nameserver 127.0.0.53\n", own_network=True)


def test_write_etc_files(tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    files = rootfs.write_etc_files(str(tmp_path / "etc"), "box", host_resolv_conf=str(resolv))
    assert sorted(files) == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
    with open(files["/etc/hostname"], encoding="utf-8") as handle:
        assert handle.read() == "box\n"


# -- in-root resolution on a plain directory tree -------------------------------------------
@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hosts").write_text("in-root\n")
    (root / "real").mkdir()
    os.symlink("/etc", root / "abs")  # absolute: must mean <root>/etc
    os.symlink("../../../../etc", root / "up")  # climbing: stops at the root
    os.symlink("real", root / "rel")
    os.symlink("/etc/hosts", root / "etc" / "link")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield str(root), fd
    os.close(fd)


def _where(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/abs/hosts", "/etc/hosts"),
        ("/up/hosts", "/etc/hosts"),
        ("/../../etc/hosts", "/etc/hosts"),
        ("/rel", "/real"),
        ("/etc/link", "/etc/hosts"),
        ("/", ""),
    ],
)
def test_symlinks_resolve_inside_the_root(tree, path, expected):
    """R3/R8/R10: absolute and climbing symlinks never leave the root."""
    root, root_fd = tree
    fd, resolved = rootfs.open_in_root(root_fd, path)
    assert _where(fd) == root + expected
    assert resolved == (expected or "/")


def test_create_makes_missing_components_inside(tree):
    root, root_fd = tree
    fd, resolved = rootfs.open_in_root(root_fd, "/abs/new/dir/file", create="file")
    assert _where(fd) == root + "/etc/new/dir/file"
    assert resolved == "/etc/new/dir/file"
    assert os.path.isfile(root + "/etc/new/dir/file")


def test_missing_without_create(tree):
    root_fd = tree[1]
    with pytest.raises(FileNotFoundError):
        rootfs.open_in_root(root_fd, "/nope/x")


def test_symlink_loops_are_cut(tree):
    root_fd = tree[1]
    with pytest.raises(OSError, match="too many levels"):
        rootfs.open_in_root(root_fd, "/loop1/x")


def test_file_in_the_middle_of_a_path(tree):
    root_fd = tree[1]
    with pytest.raises(NotADirectoryError):
        rootfs.open_in_root(root_fd, "/etc/hosts/x", create="dir")


def test_no_descriptor_leaks(tree):
    root_fd = tree[1]
    before = len(os.listdir("/proc/self/fd"))
    for path in ("/abs/hosts", "/up/hosts", "/rel"):
        os.close(rootfs.open_in_root(root_fd, path)[0])
    with pytest.raises(OSError, match="too many levels"):
        rootfs.open_in_root(root_fd, "/loop1")
    assert len(os.listdir("/proc/self/fd")) == before
