"""commit and plan_commit on real stores: a container created (not started) from a small pulled image.

The container's upper directory is written directly (plain files, no root
needed); running containers, pausing, whiteouts and opaque directories are
proven by the integration tests.
"""

import argparse
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from support.fake_registry import FakeRegistry
from support.small_images import add_to_fake, small_image

from ansible_collections.berth.containers.plugins.module_utils.runtime import cli, cli_images
from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config
from ansible_collections.berth.containers.plugins.module_utils.runtime import spec as spec_module
from ansible_collections.berth.containers.plugins.module_utils.runtime.commit import (
    build_config,
    commit,
    container_command,
    plan_commit,
    same_image,
)
from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument, InvalidReference
from ansible_collections.berth.containers.plugins.module_utils.runtime.layerdiff import EMPTY_LAYER_DIFF_ID

IMAGE = small_image({"etc/motd": "hello\n", "srv/index.html": "old\n"})
DIFF = "sha256:" + "ab" * 32
BASE: Dict[str, Any] = json.loads(IMAGE.config)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Tuple[str, Runtime, Any, str]]:
    """(config path, runtime, container ``web`` in the created state, image name)."""
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")}))
    with FakeRegistry() as fake:
        add_to_fake(fake, "app", IMAGE, "v1")
        runtime = Runtime(runtime_config.load(str(config)))
        name = f"{fake.host}/app:v1"
        runtime.images.pull(name)
        container = runtime.create(spec_module.normalize({"image": name}), name="web")
        yield str(config), runtime, container, name


def write(container: Any, relative: str, text: str) -> Path:
    path = Path(container.path("upper")) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def blobs(runtime: Runtime) -> List[str]:
    return sorted(os.listdir(runtime.store.blobs))


# -- the config ------------------------------------------------------------------------------------------


def test_build_config_adds_the_layer_the_history_entry_and_the_changes() -> None:
    config = build_config(BASE, DIFF, "2030-01-01T00:00:00Z", "/bin/sh", ['CMD ["serve"]'], "Jane", "custom page")
    assert config["created"] == "2030-01-01T00:00:00Z"
    assert config["author"] == "Jane"
    assert config["config"] == {"Cmd": ["serve"], "Env": ["PATH=/bin"]}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [IMAGE.diff_id, DIFF]}
    assert config["history"][:-1] == BASE["history"]
    assert config["history"][-1] == {
        "created": "2030-01-01T00:00:00Z",
        "author": "Jane",
        "created_by": "/bin/sh",
        "comment": "custom page",
    }
    assert (config["architecture"], config["os"]) == (BASE["architecture"], BASE["os"])
    assert BASE["rootfs"]["diff_ids"] == [IMAGE.diff_id], "the base config is not modified"


def test_an_empty_diff_adds_no_layer_and_an_empty_history_entry() -> None:
    config = build_config({**BASE, "author": "base author"}, EMPTY_LAYER_DIFF_ID, "2030-01-01T00:00:00Z", "sh")
    assert config["rootfs"]["diff_ids"] == [IMAGE.diff_id]
    assert config["history"][-1] == {"created": "2030-01-01T00:00:00Z", "created_by": "sh", "empty_layer": True}
    assert "author" not in config, "like Docker, the base's author is not inherited"


def test_a_base_without_history_gets_entries_for_its_layers() -> None:
    base = {"rootfs": {"type": "layers", "diff_ids": [IMAGE.diff_id, "sha256:" + "cd" * 32]}}
    history = build_config(base, DIFF, "t", "x")["history"]
    assert history == [{"created_by": ""}, {"created_by": ""}, {"created": "t", "created_by": "x"}]


def test_same_image_ignores_creation_times_only() -> None:
    first = build_config(BASE, DIFF, "2030-01-01T00:00:00Z", "sh", ["ENV A=1"], "", "m")
    later = build_config(BASE, DIFF, "2031-05-05T00:00:00Z", "sh", ["ENV A=1"], "", "m")
    assert same_image(first, later)
    assert not same_image(first, build_config(BASE, "sha256:" + "ef" * 32, "t", "sh", ["ENV A=1"], "", "m"))
    assert not same_image(first, build_config(BASE, DIFF, "t", "sh", ["ENV A=2"], "", "m"))
    assert not same_image(first, build_config(BASE, DIFF, "t", "sh", ["ENV A=1"], "", "other message"))
    assert not same_image(first, build_config(BASE, DIFF, "t", "sh", ["ENV A=1"], "someone", "m"))
    moved_base = {**BASE, "history": [{**BASE["history"][0], "created": "2099-01-01T00:00:00Z"}, BASE["history"][1]]}
    assert not same_image(first, build_config(moved_base, DIFF, "t", "sh", ["ENV A=1"], "", "m"))


def test_created_by_is_the_containers_cmd() -> None:
    image = {"config": {"Entrypoint": ["/entry"], "Cmd": ["nginx", "-g", "daemon off;"]}}
    assert container_command({"spec": {"command": None, "entrypoint": None}}, image) == ["nginx", "-g", "daemon off;"]
    assert container_command({"spec": {"command": ["sh"], "entrypoint": None}}, image) == ["sh"]
    assert container_command({"spec": {"command": None, "entrypoint": ["/other"]}}, image) == []


# -- commit and plan on a real store ---------------------------------------------------------------------


def test_commit_records_a_runnable_image_and_the_plan_follows_the_container(setup) -> None:
    _config, runtime, container, name = setup
    write(container, "srv/index.html", "hello\n")
    write(container, "srv/new/file", "new\n")

    plan = plan_commit(runtime, container, "mysite:v1", message="custom page", changes=['CMD ["serve"]'])
    assert plan.changed is True
    assert plan.before is None
    assert plan.empty_layer is False
    assert plan.stats.files == 2
    stored = blobs(runtime)

    result = commit(runtime, container, "mysite:v1", message="custom page", changes=['CMD ["serve"]'])
    assert result.diff_id == plan.diff_id, "the plan predicts the layer exactly"
    assert result.changed is True
    assert result.previous_id is None
    image = result.image
    assert runtime.images.get("mysite:v1").id == image.id
    assert len(set(blobs(runtime)) - set(stored)) == 3, "layer, config and manifest"
    assert image.manifest_media_type == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["diff_id"] for layer in image.layers] == [IMAGE.diff_id, result.diff_id]
    top = runtime.store.layer(image.chain_ids[-1])
    assert top is not None
    assert top.parent == image.chain_ids[0]
    assert Path(runtime.store.layer_diff(image.chain_ids[-1]), "srv/index.html").read_text() == "hello\n"
    assert runtime.store.verify(deep=True) == []

    config = runtime.images.config_of(image)
    assert config["config"]["Cmd"] == ["serve"]
    history = runtime.images.history("mysite:v1")
    assert (history[0]["comment"], history[0]["created_by"], history[0]["empty_layer"]) == (
        "custom page",
        "/bin/sh",
        False,
    )
    assert history[0]["size"] == top.size > 0

    again = plan_commit(runtime, container, "mysite:v1", message="custom page", changes=['CMD ["serve"]'])
    assert again.changed is False, "an untouched container: the tag already names this commit"
    assert again.before.id == image.id
    assert plan_commit(runtime, container, "mysite:v1", message="another").changed is True
    assert plan_commit(runtime, container, "mysite:v1", message="custom page", fmt="docker").changed is True
    assert plan_commit(runtime, container, "mysite:v2", message="custom page").changed is True

    os.utime(write(container, "srv/index.html", "hello\n"), (1, 1))
    touched = plan_commit(runtime, container, "mysite:v1", message="custom page", changes=['CMD ["serve"]'])
    assert touched.changed is True
    assert touched.diff_id != result.diff_id

    from_new = runtime.create(spec_module.normalize({"image": "mysite:v1"}), name="child")
    assert from_new.record["chain_ids"] == image.chain_ids
    assert name


def test_an_untouched_container_commits_an_empty_layer(setup) -> None:
    _config, runtime, container, _name = setup
    result = commit(runtime, container, "same:v1", author="Jane", fmt="docker")
    assert result.diff_id == EMPTY_LAYER_DIFF_ID
    assert result.empty_layer
    image = result.image
    assert [layer["diff_id"] for layer in image.layers] == [IMAGE.diff_id]
    assert image.manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json"
    config = runtime.images.config_of(image)
    assert config["history"][-1]["empty_layer"] is True
    assert config["author"] == "Jane"
    assert runtime.images.history("same:v1")[0]["size"] == 0
    plan = plan_commit(runtime, container, "same:v1", author="Jane", fmt="docker")
    assert plan.changed is False


def test_an_untagged_commit(setup) -> None:
    _config, runtime, container, _name = setup
    write(container, "a", "a")
    result = commit(runtime, container)
    assert result.reference is None
    assert runtime.images.tags_of(result.image) == []
    assert any(record.id == result.image.id for record, _tags in runtime.images.list())


def test_bad_requests_fail_before_anything_is_stored(setup) -> None:
    _config, runtime, container, _name = setup
    write(container, "a", "a")
    stored = blobs(runtime)
    with pytest.raises(InvalidArgument, match="only CMD, ENTRYPOINT"):
        commit(runtime, container, "x:v1", changes=["RUN make"])
    with pytest.raises(InvalidArgument, match="not a digest"):
        commit(runtime, container, "x@sha256:" + "0" * 64)
    with pytest.raises(InvalidReference):
        commit(runtime, container, "Bad Name")
    with pytest.raises(InvalidArgument, match="manifest format"):
        commit(runtime, container, "x:v1", fmt="v1")
    assert blobs(runtime) == stored
    assert not [name for name in os.listdir(runtime.store.blobs) if name.startswith(".commit-")]


# -- the command line ---------------------------------------------------------------------------------------


def berth(config: str, argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="berth")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="cmd")
    cli_images.add_image_commands(sub)
    args = parser.parse_args(["--config", config, *argv])
    return cli.COMMANDS[args.cmd](args)


def test_berth_commit_prints_the_image_id(setup, capsys) -> None:
    config, runtime, container, _name = setup
    write(container, "srv/index.html", "cli\n")
    argv = ["commit", "-m", "by cli", "-a", "me", "-c", "ENV A=1", "-c", "EXPOSE 80", "--pause=false", "web", "app:v2"]
    assert berth(config, argv) == 0
    image_id = capsys.readouterr().out.strip()
    assert image_id.startswith("sha256:")
    assert len(image_id) == 71
    assert runtime.images.get("app:v2").id == image_id
    config_json = runtime.images.config_of(runtime.images.get(image_id))
    assert config_json["config"]["Env"] == ["PATH=/bin", "A=1"]
    assert config_json["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert config_json["history"][-1]["comment"] == "by cli"
    assert config_json["author"] == "me"

    assert berth(config, ["commit", "-p", "web"]) == 0
    untagged = capsys.readouterr().out.strip()
    assert runtime.images.tags_of(runtime.images.get(untagged)) == []


def test_pause_options_parse_like_docker() -> None:
    parser = argparse.ArgumentParser()
    cli_images.add_image_commands(parser.add_subparsers(dest="cmd"))
    assert parser.parse_args(["commit", "web"]).pause is True
    assert parser.parse_args(["commit", "-p", "web"]).pause is True
    assert parser.parse_args(["commit", "--pause=true", "web", "x"]).pause is True
    parsed = parser.parse_args(["commit", "--pause=false", "web", "x:y"])
    assert (parsed.pause, parsed.container, parsed.repository) == (False, "web", "x:y")
