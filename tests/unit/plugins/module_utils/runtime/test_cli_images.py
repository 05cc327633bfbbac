"""``berth push``, ``save`` and ``load`` against a small real registry on loopback and real stores.

The commands are parsed with the parsers ``add_image_commands`` adds, as
``cli.build_parser`` will once it registers them.
"""

import argparse
import json
import tarfile
from typing import Iterator, List

import pytest
from support.fake_registry import FakeRegistry
from support.small_images import add_to_fake, small_image

from ansible_collections.berth.containers.plugins.module_utils.runtime import cli, cli_images
from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images

IMAGE = small_image({"etc/hello": "hello\n"})


def berth(config: str, argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="berth")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="cmd")
    cli_images.add_image_commands(sub)
    args = parser.parse_args(["--config", config, *argv])
    return cli.COMMANDS[args.cmd](args)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with FakeRegistry() as registry:
        add_to_fake(registry, "team/app", IMAGE, "v1")
        yield registry


def make_config(path, name: str) -> str:
    config = path / f"{name}.json"
    config.write_text(json.dumps({"data-root": str(path / name), "exec-root": str(path / f"{name}-run")}))
    return str(config)


def test_push_skips_what_the_registry_has_and_converts_the_format(fake: FakeRegistry, tmp_path, capsys) -> None:
    config = make_config(tmp_path, "one")
    Images(runtime_config.load(config)).pull(f"{fake.host}/team/app:v1")
    capsys.readouterr()

    assert berth(config, ["push", f"{fake.host}/team/app:v1", f"{fake.host}/team/copy:v1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"v1: digest: {IMAGE.digest}"
    assert sorted(line.split(": ", 1)[1] for line in out[:-1]) == ["Mounted from another repository"] * 2
    assert fake.manifests[("team/copy", "v1")][0] == IMAGE.manifest

    fake.requests.clear()
    assert berth(config, ["push", f"{fake.host}/team/app:v1", f"{fake.host}/team/copy:v2", "--format", "docker"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [f"{IMAGE.layer_digest[7:19]}: Layer already exists", f"{IMAGE.id[7:19]}: Layer already exists"]
    body, media_type = fake.manifests[("team/copy", "v2")]
    assert media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert json.loads(body)["config"]["digest"] == IMAGE.id
    assert not [r for r in fake.requests if "/blobs/uploads/" in r.path]


def test_save_then_load_into_another_store(fake: FakeRegistry, tmp_path, capsys) -> None:
    source = make_config(tmp_path, "source")
    Images(runtime_config.load(source)).pull(f"{fake.host}/team/app:v1")
    archive = tmp_path / "app.tar"
    assert berth(source, ["save", "-o", str(archive), f"{fake.host}/team/app:v1"]) == 0
    with tarfile.open(archive) as tar:
        assert {"oci-layout", "index.json", "manifest.json"} <= set(tar.getnames())
        assert all(member.mtime == 0 and member.uid == 0 for member in tar.getmembers())
    capsys.readouterr()

    target = make_config(tmp_path, "target")
    assert berth(target, ["load", "-i", str(archive)]) == 0
    assert capsys.readouterr().out == f"Loaded image: {fake.host}/team/app:v1\n"
    loaded = Images(runtime_config.load(target))
    assert loaded.get(f"{fake.host}/team/app:v1").id == IMAGE.id
    assert loaded.store.verify(deep=True) == []

    assert berth(target, ["load", "-i", str(archive), "--name", "example.org/renamed:x"]) == 0
    assert capsys.readouterr().out == "Loaded image: example.org/renamed:x\n"


def test_save_refuses_a_terminal_and_load_refuses_a_non_archive(tmp_path, monkeypatch) -> None:
    config = make_config(tmp_path, "empty")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    with pytest.raises(InvalidArgument, match="terminal"):
        berth(config, ["save", "busybox"])
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidArgument, match="not a readable tar archive"):
        berth(config, ["load", "-i", str(junk)])
