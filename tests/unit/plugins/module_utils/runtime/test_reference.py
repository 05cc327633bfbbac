"""Image references parse and normalise exactly like Docker's (RUNTIME-REFERENCE G7 and more)."""

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import reference
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidReference

DIGEST = "sha256:" + "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# input -> (domain, path, tag, digest, canonical str, familiar name)
VALID = [
    ("ubuntu", ("docker.io", "library/ubuntu", "latest", None, "docker.io/library/ubuntu:latest", "ubuntu")),
    ("ubuntu:22.04", ("docker.io", "library/ubuntu", "22.04", None, "docker.io/library/ubuntu:22.04", "ubuntu")),
    ("library/ubuntu", ("docker.io", "library/ubuntu", "latest", None, "docker.io/library/ubuntu:latest", "ubuntu")),
    ("docker.io/ubuntu", ("docker.io", "library/ubuntu", "latest", None, "docker.io/library/ubuntu:latest", "ubuntu")),
    (
        "index.docker.io/ubuntu",
        ("docker.io", "library/ubuntu", "latest", None, "docker.io/library/ubuntu:latest", "ubuntu"),
    ),
    (
        "docker.io/library/ubuntu:latest",
        ("docker.io", "library/ubuntu", "latest", None, "docker.io/library/ubuntu:latest", "ubuntu"),
    ),
    ("localhost/foo", ("localhost", "foo", "latest", None, "localhost/foo:latest", "localhost/foo")),
    (
        "localhost:5000/foo",
        ("localhost:5000", "foo", "latest", None, "localhost:5000/foo:latest", "localhost:5000/foo"),
    ),
    (
        f"myreg:5000/a/b:t@{DIGEST}",
        ("myreg:5000", "a/b", "t", DIGEST, f"myreg:5000/a/b:t@{DIGEST}", "myreg:5000/a/b"),
    ),
    ("[::1]:5000/x", ("[::1]:5000", "x", "latest", None, "[::1]:5000/x:latest", "[::1]:5000/x")),
    (
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        (
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
            "latest",
            None,
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        ),
    ),
    ("Foo/bar", ("Foo", "bar", "latest", None, "Foo/bar:latest", "Foo/bar")),
    ("FOO/bar:v1", ("FOO", "bar", "v1", None, "FOO/bar:v1", "FOO/bar")),
    (
        "bitnami/redis",
        ("docker.io", "bitnami/redis", "latest", None, "docker.io/bitnami/redis:latest", "bitnami/redis"),
    ),
    # A single component is never host:port: repo "localhost", tag "5000".
    (
        "localhost:5000",
        ("docker.io", "library/localhost", "5000", None, "docker.io/library/localhost:5000", "localhost"),
    ),
    (
        "localhost",
        ("docker.io", "library/localhost", "latest", None, "docker.io/library/localhost:latest", "localhost"),
    ),
    (
        "192.168.0.1:80",
        ("docker.io", "library/192.168.0.1", "80", None, "docker.io/library/192.168.0.1:80", "192.168.0.1"),
    ),
    (
        "127.0.0.1:5000/debian",
        ("127.0.0.1:5000", "debian", "latest", None, "127.0.0.1:5000/debian:latest", "127.0.0.1:5000/debian"),
    ),
    (
        "example.com/private/moonbase",
        (
            "example.com",
            "private/moonbase",
            "latest",
            None,
            "example.com/private/moonbase:latest",
            "example.com/private/moonbase",
        ),
    ),
    ("test_com/foo", ("docker.io", "test_com/foo", "latest", None, "docker.io/test_com/foo:latest", "test_com/foo")),
    (
        "docker.io/library/foo/bar",
        ("docker.io", "library/foo/bar", "latest", None, "docker.io/library/foo/bar:latest", "library/foo/bar"),
    ),
    (
        "xn--n3h.com:18080/foo",
        ("xn--n3h.com:18080", "foo", "latest", None, "xn--n3h.com:18080/foo:latest", "xn--n3h.com:18080/foo"),
    ),
    # digest only: no tag is invented
    (f"redis@{DIGEST}", ("docker.io", "library/redis", None, DIGEST, f"docker.io/library/redis@{DIGEST}", "redis")),
    # tag + digest: both kept, the digest decides what is pulled
    (
        f"busybox:latest@{DIGEST}",
        ("docker.io", "library/busybox", "latest", DIGEST, f"docker.io/library/busybox:latest@{DIGEST}", "busybox"),
    ),
    (
        "docker---rules/docker",
        (
            "docker.io",
            "docker---rules/docker",
            "latest",
            None,
            "docker.io/docker---rules/docker:latest",
            "docker---rules/docker",
        ),
    ),
    (
        "dock__er/docker:V1.0_x-y",
        ("docker.io", "dock__er/docker", "V1.0_x-y", None, "docker.io/dock__er/docker:V1.0_x-y", "dock__er/docker"),
    ),
    (
        f"docker.io/{HEX64}",
        ("docker.io", f"library/{HEX64}", "latest", None, f"docker.io/library/{HEX64}:latest", HEX64),
    ),
    ("a" * 63, ("docker.io", "library/" + "a" * 63, "latest", None, f"docker.io/library/{'a' * 63}:latest", "a" * 63)),
    (
        "ubuntu:" + "t" * 128,
        ("docker.io", "library/ubuntu", "t" * 128, None, f"docker.io/library/ubuntu:{'t' * 128}", "ubuntu"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[case[0][:40] for case in VALID])
def test_valid_references_normalise_like_docker(text: str, expected: tuple) -> None:
    domain, path, tag, digest, canonical, familiar = expected
    ref = reference.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert str(ref) == canonical
    assert ref.familiar == familiar
    assert ref.name == f"{domain}/{path}"
    assert reference.parse(str(ref)) == ref


INVALID = [
    (HEX64, "image ID"),
    ("", "non-empty"),
    ("docker/Docker", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("UPPER", "must be lowercase"),
    ("-docker", "components"),
    ("-docker/docker", "components"),
    ("docker-/docker", "components"),
    ("docker///docker", "components"),
    ("____/____", "components"),
    ("dock..er/docker", "registry host"),
    ("dock_.er/docker", "registry host"),
    ("docker/", "empty"),
    ("https://github.com/docker/docker", "registry host"),
    ("[fc00::1]:5000", "components"),
    ("fc00::1:5000/debian", "registry host"),
    ("[fe80::1%eth0]:5000/debian", "registry host"),
    ("-docker.io/docker/docker", "registry host"),
    ("ubuntu:", "tag"),
    ("ubuntu:-x", "tag"),
    ("ubuntu:.x", "tag"),
    ("ubuntu:" + "t" * 129, "tag"),
    ("ubuntu@sha256:abc", "64 lowercase hex"),
    ("ubuntu@sha256:" + "A" * 64, "64 lowercase hex"),
    ("ubuntu@md5:" + "a" * 32, "unsupported algorithm"),
    ("ubuntu@sha256:../../etc/passwd", "64 lowercase hex"),
    ("ubuntu@", "not a digest"),
    ("ubu ntu", "components"),
    ("a/" + "b" * 254, "255"),
    ("ubuntu:tag:other", "tag"),
]


@pytest.mark.parametrize(("text", "rule"), INVALID, ids=[case[0][:40] or "empty" for case in INVALID])
def test_invalid_references_are_refused_naming_input_and_rule(text: str, rule: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        reference.parse(text)
    message = str(caught.value)
    assert rule in message
    assert repr(text)[:30] in message or text == ""


def test_path_of_exactly_255_characters_is_accepted() -> None:
    ref = reference.parse("a/" + "b" * 253)
    assert len(ref.path) == 255


def test_api_host_of_docker_hub_is_registry_1() -> None:
    assert reference.parse("nginx").api_host == "registry-1.docker.io"
    assert reference.parse("localhost:5000/x").api_host == "localhost:5000"
    assert reference.parse("[::1]:5000/x").api_host == "[::1]:5000"


def test_identifier_prefers_digest_over_tag() -> None:
    assert reference.parse("nginx").identifier == "latest"
    assert reference.parse("nginx:1.25").identifier == "1.25"
    assert reference.parse(f"nginx:1.25@{DIGEST}").identifier == DIGEST


def test_display_keeps_tag_and_digest_in_the_short_form() -> None:
    assert reference.parse("docker.io/library/nginx:1.25").display == "nginx:1.25"
    assert reference.parse(f"localhost:5000/x:t@{DIGEST}").display == f"localhost:5000/x:t@{DIGEST}"


def test_with_tag_replaces_tag_and_drops_digest() -> None:
    ref = reference.parse(f"localhost:5000/x:t@{DIGEST}").with_tag("v2")
    assert str(ref) == "localhost:5000/x:v2"
    with pytest.raises(InvalidReference, match="tag '-bad'"):
        ref.with_tag("-bad")


def test_with_digest_validates_the_digest() -> None:
    ref = reference.parse("nginx").with_digest(DIGEST)
    assert str(ref) == f"docker.io/library/nginx:latest@{DIGEST}"
    with pytest.raises(InvalidReference, match="lowercase hex"):
        ref.with_digest("sha256:1234")


def test_reference_is_a_hashable_value() -> None:
    assert reference.parse("nginx") == reference.parse("docker.io/library/nginx:latest")
    assert len({reference.parse("nginx"), reference.parse("index.docker.io/library/nginx")}) == 1
