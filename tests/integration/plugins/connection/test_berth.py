"""The berth connection plugin, end to end: ansible-playbook into real berth containers.

Everything is real: the image comes from the test registry, the containers
are started with ``bin/berth``, Ansible runs modules inside them over the
plugin, and the results are checked from the host side - in the container's
upper (copy-on-write) directory - not by asking Ansible again.
"""

import hashlib
import json
import os
import stat
import time
from typing import Any, Dict, List

import pytest
from support import ansible_images
from support.berth_containers import Containers
from support.berth_env import BerthEnv
from support.berth_play import connection_probe, container_host, environment, run_play

from .conftest import TARGET_IMAGE

BIG_FILE_SIZE = 50 * 1024 * 1024

ROLE_TASKS = [
    {
        "name": "Application directory, owned by the connecting user",
        "ansible.builtin.file": {"path": "/srv/app", "state": "directory", "owner": "ansible", "mode": "0750"},
    },
    {
        "name": "Configuration from a template",
        "ansible.builtin.template": {"src": "app.conf.j2", "dest": "/srv/app/app.conf", "mode": "0644"},
    },
    {
        "name": "A marker written by a command, once",
        "ansible.builtin.command": {"cmd": "touch /srv/app/initialised", "creates": "/srv/app/initialised"},
    },
    {
        "name": "A large artifact",
        "ansible.builtin.copy": {"src": "{{ big_file }}", "dest": "/srv/big.bin", "mode": "0644"},
    },
    {
        "name": "The configuration, fetched back",
        "ansible.builtin.fetch": {"src": "/srv/app/app.conf", "dest": "{{ fetch_dir }}/app.conf", "flat": True},
    },
    {
        "name": "A file of the connecting user itself",
        "ansible.builtin.copy": {"content": "written as {{ ansible_user }}\n", "dest": "/home/ansible/note.txt"},
        "become": False,
    },
    {
        "name": "Who runs tasks",
        "ansible.builtin.command": "id -un",
        "register": "with_become",
        "changed_when": False,
    },
    {
        "name": "Who runs tasks without become",
        "ansible.builtin.command": "id -un",
        "register": "without_become",
        "changed_when": False,
        "become": False,
    },
    {
        "name": "Report the users",
        "ansible.builtin.copy": {
            "content": "{{ with_become.stdout }} {{ without_become.stdout }}\n",
            "dest": "{{ fetch_dir }}/users.txt",
            "mode": "0644",
        },
        "delegate_to": "localhost",
        "become": False,
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
    },
]
TEMPLATE = (
    "# managed by ansible\nname={{ app_name }}\nhost={{ ansible_facts['hostname'] }}\nuser={{ ansible_user_id }}\n"
)


def write_role(work: str) -> None:
    for part in ("tasks", "templates"):
        os.makedirs(os.path.join(work, "roles", "webapp", part))
    with open(os.path.join(work, "roles", "webapp", "tasks", "main.yml"), "w", encoding="utf-8") as handle:
        json.dump(ROLE_TASKS, handle)
    with open(os.path.join(work, "roles", "webapp", "templates", "app.conf.j2"), "w", encoding="utf-8") as handle:
        handle.write(TEMPLATE)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_a_role_as_a_non_root_user_with_sudo_become_and_a_50mb_copy(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    # sudo is set-uid: it works where no_new_privs is off, which berth does for systemd containers.
    name = containers.run(
        "role", TARGET_IMAGE, "sleep", "infinity", options=["--systemd", "true", "--hostname", "app1"]
    )
    write_role(work_dir)
    big_file = os.path.join(work_dir, "big.bin")
    with open(big_file, "wb") as handle:
        handle.write(os.urandom(BIG_FILE_SIZE))
    fetch_dir = os.path.join(work_dir, "fetched")
    os.makedirs(fetch_dir)
    hosts = {
        "app": container_host(
            name,
            target_host.config_path,
            ansible_user=ansible_images.USER,
            ansible_become_password=ansible_images.USER_PASSWORD,
        )
    }
    play = {
        "hosts": "app",
        "become": True,
        "vars": {"app_name": "berth-demo", "big_file": big_file, "fetch_dir": fetch_dir},
        "roles": ["webapp"],
    }

    began = time.monotonic()
    first = run_play(work_dir, [play], hosts)
    first_seconds = time.monotonic() - began
    assert first.returncode == 0, first
    assert first.recap("app")["changed"] == 7, first
    assert first.recap("app")["failed"] == 0

    upper = containers.upper_dir(name)
    app_dir = os.lstat(os.path.join(upper, "srv/app"))
    assert (app_dir.st_uid, stat.S_IMODE(app_dir.st_mode)) == (1000, 0o750)
    config = os.path.join(upper, "srv/app/app.conf")
    with open(config, encoding="utf-8") as handle:
        rendered = handle.read()
    assert rendered == "# managed by ansible\nname=berth-demo\nhost=app1\nuser=root\n"
    assert os.lstat(config).st_uid == 0, "become made root write it"
    assert os.path.isfile(os.path.join(upper, "srv/app/initialised"))
    copied = os.path.join(upper, "srv/big.bin")
    assert os.path.getsize(copied) == BIG_FILE_SIZE
    assert sha256_of(copied) == sha256_of(big_file)
    note = os.path.join(upper, "home/ansible/note.txt")
    with open(note, encoding="utf-8") as handle:
        assert handle.read() == "written as ansible\n"
    assert os.lstat(note).st_uid == 1000, "without become the connecting user writes"
    with open(os.path.join(fetch_dir, "app.conf"), encoding="utf-8") as handle:
        assert handle.read() == rendered
    with open(os.path.join(fetch_dir, "users.txt"), encoding="utf-8") as handle:
        assert handle.read() == "root ansible\n"

    began = time.monotonic()
    second = run_play(work_dir, [play], hosts)
    second_seconds = time.monotonic() - began
    assert second.returncode == 0, second
    assert second.recap("app")["changed"] == 0, second
    print(f"\nrole with a 50 MB copy: first run {first_seconds:.1f} s, second (no change) {second_seconds:.1f} s")


@pytest.mark.slow
def test_su_become_answers_the_password_prompt_through_a_terminal(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    name = containers.run("su", TARGET_IMAGE, "sleep", "infinity", options=["--systemd", "true"])
    hosts = {"target": container_host(name, target_host.config_path, ansible_user=ansible_images.USER)}
    play = {
        "hosts": "target",
        "gather_facts": False,
        "tasks": [
            {
                "ansible.builtin.command": "id -un",
                "become": True,
                "become_method": "su",
                "vars": {"ansible_become_password": ansible_images.ROOT_PASSWORD},
                "register": "su_user",
            },
            {
                "ansible.builtin.command": "id -un",
                "become": True,
                "become_method": "su",
                "vars": {"ansible_become_password": "wrong"},
                "ignore_errors": True,
                "register": "wrong_password",
            },
            {"ansible.builtin.assert": {"that": ["su_user.stdout == 'root'", "wrong_password is failed"]}},
        ],
    }
    result = run_play(work_dir, [play], hosts)
    assert result.returncode == 0, result
    assert result.recap("target")["failed"] == 0


def test_become_from_a_non_root_user_in_a_default_container_explains_no_new_privs(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    name = containers.run("nnp", TARGET_IMAGE, "sleep", "infinity")
    hosts = {"target": container_host(name, target_host.config_path, ansible_user=ansible_images.NOPASSWD_USER)}
    play = {"hosts": "target", "gather_facts": False, "tasks": [{"ansible.builtin.command": "id", "become": True}]}
    result = run_play(work_dir, [play], hosts)
    assert result.returncode != 0
    assert 'The "no new privileges" flag is set' in result.output
    assert "connect as root, or create the container with systemd=true" in result.output


@pytest.mark.slow
def test_systemd_service_started_and_enabled_then_verified_by_testinfra(
    target_host: BerthEnv, containers: Containers, work_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import testinfra

    name = containers.run("booted", TARGET_IMAGE)
    assert containers.wait_for_systemd(name) == "running"
    hosts = {"booted": container_host(name, target_host.config_path)}
    unit = (
        "[Unit]\nDescription=Berth test service\n\n"
        "[Service]\nExecStart=/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /srv\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    play = {
        "hosts": "booted",
        "gather_facts": False,
        "tasks": [
            {"ansible.builtin.copy": {"content": unit, "dest": "/etc/systemd/system/berth-hello.service"}},
            {"ansible.builtin.copy": {"content": "hello from systemd\n", "dest": "/srv/index.txt"}},
            {
                "ansible.builtin.systemd_service": {
                    "name": "berth-hello",
                    "state": "started",
                    "enabled": True,
                    "daemon_reload": True,
                }
            },
        ],
    }
    first = run_play(work_dir, [play], hosts)
    assert first.returncode == 0, first
    assert first.recap("booted")["changed"] == 3, first
    second = run_play(work_dir, [play], hosts)
    assert second.recap("booted")["changed"] == 0, second

    upper = containers.upper_dir(name)
    wants = os.path.join(upper, "etc/systemd/system/multi-user.target.wants/berth-hello.service")
    assert os.readlink(wants) == "/etc/systemd/system/berth-hello.service"

    for key, value in environment(work_dir).items():
        if key.startswith("ANSIBLE_") or key == "PATH":
            monkeypatch.setenv(key, value)
    inventory = os.path.join(work_dir, "inventory.json")
    host = testinfra.get_host(f"ansible://booted?ansible_inventory={inventory}&force_ansible=true")
    service = host.service("berth-hello")
    assert service.is_running
    assert service.is_enabled
    answer = host.run(
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/index.txt').read())\""
    )
    assert answer.stdout.strip() == "b'hello from systemd\\n'"


def test_a_missing_or_stopped_container_is_a_clear_connection_failure(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    missing = connection_probe(
        work_dir, container_host("no-such-box", target_host.config_path), [{"op": "exec", "cmd": "true"}]
    )
    assert missing[0]["error"] == "AnsibleConnectionFailure"
    assert missing[0]["message"].startswith("no berth container named no-such-box")

    name = containers.run("stopped", TARGET_IMAGE, "true")
    deadline = time.monotonic() + 30
    while containers.inspect(name)["State"]["Status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = connection_probe(work_dir, container_host(name, target_host.config_path), [{"op": "exec", "cmd": "true"}])
    assert stopped[0]["error"] == "AnsibleConnectionFailure"
    assert stopped[0]["message"] == f"berth container {name} is not running (it is exited): start it"

    result = run_play(work_dir, [{"hosts": "gone", "gather_facts": False, "tasks": [{"ansible.builtin.ping": {}}]}],
                      {"gone": container_host("no-such-box", target_host.config_path)})  # fmt: skip
    assert result.recap("gone")["unreachable"] == 1
    assert "no berth container named no-such-box" in result.output


def test_exec_pipes_stdin_and_reports_exit_codes_and_the_default_user(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    name = containers.run("exec", TARGET_IMAGE, "sleep", "infinity", options=["--user", "1001"])
    variables = container_host(name, target_host.config_path, ansible_berth_extra_env={"GREETING": "hello"})
    outcomes = connection_probe(
        work_dir,
        variables,
        [
            {"op": "exec", "cmd": "id -u; echo $GREETING; cat", "in_data": "through stdin"},
            {"op": "exec", "cmd": "echo oops >&2; exit 3"},
            {"op": "exec", "cmd": "kill -KILL $$"},
        ],
    )
    assert outcomes[0] == {
        "ok": True, "rc": 0, "stdout": "1001\nhello\nthrough stdin", "stderr": "", "remote_user": "deploy",
    }  # fmt: skip
    assert (outcomes[1]["rc"], outcomes[1]["stderr"]) == (3, "oops\n")
    assert outcomes[2]["rc"] == 128 + 9
    as_root = connection_probe(work_dir, {**variables, "ansible_user": "root"}, [{"op": "exec", "cmd": "id -u"}])
    assert (as_root[0]["stdout"], as_root[0]["remote_user"]) == ("0\n", "root")
    no_shell = connection_probe(
        work_dir, {**variables, "ansible_shell_executable": "/bin/no-such-shell"}, [{"op": "exec", "cmd": "true"}]
    )
    assert no_shell[0]["rc"] == 127


def test_put_and_fetch_resolve_paths_inside_the_container_never_on_the_host(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    # A host directory with a secret; the container points symlinks at the same path.
    host_dir = os.path.join(work_dir, "host-only")
    os.makedirs(host_dir)
    secret = os.path.join(host_dir, "secret")
    with open(secret, "w", encoding="utf-8") as handle:
        handle.write("host secret\n")
    name = containers.run("links", TARGET_IMAGE, "sleep", "infinity")
    containers.exec(
        name, "sh", "-c",
        f"mkdir -p /srv && ln -s {secret} /srv/abs-link && ln -s ../../../../../../..{host_dir} /srv/rel-dir",
    )  # fmt: skip
    payload = os.path.join(work_dir, "payload")
    with open(payload, "w", encoding="utf-8") as handle:
        handle.write("from ansible\n")
    fetched = os.path.join(work_dir, "fetched")
    variables = container_host(name, target_host.config_path)
    outcomes = connection_probe(
        work_dir,
        variables,
        [
            {"op": "fetch", "src": "/srv/abs-link", "dest": fetched},
            {"op": "fetch", "src": f"/../../../..{secret}", "dest": fetched},
            {"op": "put", "src": payload, "dest": "/srv/abs-link"},
            {"op": "put", "src": payload, "dest": "/srv/rel-dir/planted"},
            {"op": "exec", "cmd": f"mkdir -p {host_dir}"},
            {"op": "put", "src": payload, "dest": "/srv/abs-link"},
            {"op": "put", "src": payload, "dest": "/srv/rel-dir/planted"},
        ],
    )
    assert [outcome["ok"] for outcome in outcomes] == [False, False, False, False, True, True, True]
    assert "No such file" in outcomes[0]["message"]
    assert not os.path.exists(fetched), "a failed fetch leaves no file behind"
    assert "cannot create /srv/abs-link" in outcomes[2]["message"], (
        "the link's target directory is not in the container"
    )
    assert "cannot create /srv/rel-dir/planted" in outcomes[3]["message"]
    with open(secret, encoding="utf-8") as handle:
        assert handle.read() == "host secret\n"
    assert os.listdir(host_dir) == ["secret"], "nothing was planted on the host"
    upper = containers.upper_dir(name)
    inside = os.path.join(upper, host_dir.lstrip("/"))
    assert sorted(os.listdir(inside)) == ["planted", "secret"], "both writes landed in the container's own tree"


def test_a_racing_symlink_swap_never_redirects_a_put_to_the_host(
    target_host: BerthEnv, containers: Containers, work_dir: str
) -> None:
    """CVE-2018-15664 (docker cp): the container swaps a directory for a symlink while files are copied in."""
    host_dir = os.path.join(work_dir, "host-target")
    os.makedirs(host_dir)
    name = containers.run("race", TARGET_IMAGE, "sleep", "infinity")
    swapper = (
        f"exec >/dev/null 2>&1; mkdir -p {host_dir}; "
        f"while :; do ln -sfn {host_dir} /srv/swap.new && mv -T /srv/swap.new /srv/swap; "
        "rm -f /srv/swap; mkdir -p /srv/swap.d && mv -T /srv/swap.d /srv/swap 2>/dev/null; rm -rf /srv/swap; done"
    )
    target_host.berth("exec", "-d", name, "sh", "-c", swapper)
    payload = os.path.join(work_dir, "payload")
    with open(payload, "w", encoding="utf-8") as handle:
        handle.write("raced\n")
    steps: List[Dict[str, Any]] = [{"op": "put", "src": payload, "dest": f"/srv/swap/file{n}"} for n in range(30)]
    outcomes = connection_probe(work_dir, container_host(name, target_host.config_path), steps)
    assert any(outcome["ok"] for outcome in outcomes), "some puts found a usable path while it was swapped"
    assert os.listdir(host_dir) == [], "no put ever wrote into the host directory"
