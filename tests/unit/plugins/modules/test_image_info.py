"""image_info against a real store filled by real pulls from a small registry on loopback."""

import json
import os
from typing import Any, Dict, Iterator, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args
from support.fake_registry import FakeRegistry
from support.small_images import add_to_fake, small_image

from ansible_collections.berth.containers.plugins.module_utils.runtime import config as runtime_config
from ansible_collections.berth.containers.plugins.module_utils.runtime.images import Images
from ansible_collections.berth.containers.plugins.modules import image_info

FIRST = small_image({"etc/release": "one\n"}, created_by="COPY release /etc/")
SECOND = small_image({"etc/release": "two\n"})


@pytest.fixture
def store(tmp_path) -> Iterator[Tuple[str, str]]:
    """(config path, registry host) with FIRST pulled as app:v1 and app:same, SECOND as app:v2."""
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")}))
    with FakeRegistry() as fake:
        add_to_fake(fake, "app", FIRST, "v1")
        add_to_fake(fake, "app", FIRST, "same")
        add_to_fake(fake, "app", SECOND, "v2")
        images = Images(runtime_config.load(str(config)))
        for tag in ("v1", "same", "v2"):
            images.pull(f"{fake.host}/app:{tag}")
        yield str(config), fake.host


def run(capsys: pytest.CaptureFixture, args: Dict[str, Any], check: bool = False) -> Dict[str, Any]:
    with (
        patch_module_args({**args, "_ansible_check_mode": check}),
        pytest.raises(SystemExit) as exited,
    ):
        image_info.main()
    result = json.loads(capsys.readouterr().out)
    assert int(exited.value.code or 0) == 0, result
    return result


def test_named_images_in_order_each_once_and_missing_listed(store: Tuple[str, str], capsys) -> None:
    config, host = store
    names = [f"{host}/app:v2", f"{host}/app:v1", f"{host}/app:same", f"{host}/app:nope", SECOND.id[7:19]]
    result = run(capsys, {"name": names, "config": config})
    assert result["changed"] is False
    assert [image["Id"] for image in result["images"]] == [SECOND.id, FIRST.id]
    assert result["images"][1]["RepoTags"] == [f"{host}/app:same", f"{host}/app:v1"]
    assert result["missing"] == [f"{host}/app:nope"]
    assert "History" not in result["images"][0]


def test_all_images_with_history(store: Tuple[str, str], capsys) -> None:
    config, _host = store
    with open(config, encoding="utf-8") as handle:
        data_root = json.load(handle)["data-root"]
    before = sorted(os.listdir(os.path.join(data_root, "images")))
    result = run(capsys, {"history": True, "config": config}, check=True)
    assert {image["Id"] for image in result["images"]} == {FIRST.id, SECOND.id}
    first = next(image for image in result["images"] if image["Id"] == FIRST.id)
    assert [row["created_by"] for row in first["History"]] == ["CMD /bin/sh", "COPY release /etc/"]
    assert [row["empty_layer"] for row in first["History"]] == [True, False]
    assert first["History"][0]["id"] == FIRST.id
    assert first["History"][1]["id"] == "<missing>"
    assert first["History"][1]["size"] > 0
    assert sorted(os.listdir(os.path.join(data_root, "images"))) == before


def test_empty_store_and_bad_name(tmp_path, capsys) -> None:
    """A data root with no store yet lists nothing (and creates nothing); a bad name fails clearly."""
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")}))
    config = str(config)
    assert run(capsys, {"config": config})["images"] == []
    assert not os.path.exists(tmp_path / "data" / "images")
    with (
        patch_module_args({"name": ["Nginx"], "config": config}),
        pytest.raises(SystemExit) as exited,
    ):
        image_info.main()
    result = json.loads(capsys.readouterr().out)
    assert exited.value.code == 1
    assert "Nginx" in result["msg"]
