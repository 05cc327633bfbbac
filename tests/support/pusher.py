"""Push images over the Registry HTTP API v2 with plain ``requests``.

``RegistryClient`` speaks just enough of the distribution API for fixtures
and tests: the ``WWW-Authenticate`` challenge (Basic, or Bearer tokens from
the realm with ``service`` and ``scope``; tokens cached per scope), TLS with
a given CA, monolithic blob upload (``POST`` then ``PUT ?digest=``) after a
``HEAD`` that skips blobs already there, and manifests by tag or digest.
``push`` sends an ``Image`` or ``Index`` from ``support.oci`` in OCI or
Docker schema2 form and returns every digest the tests need.

Independent of Berth's runtime: this is the oracle its registry client is
tested against.
"""

import base64
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import quote, urljoin

import requests

from .oci import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Image, Index, Layer, Target, sha256_digest

ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryClientError(RuntimeError):
    """A registry or token server answered something a push cannot continue from."""


def parse_challenge(header: str) -> Tuple[str, Dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, rest = header.strip().split(" ", 1) if " " in header.strip() else (header.strip(), "")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class RegistryClient:
    """A small distribution API client with Basic and bearer-token authentication."""

    def __init__(
        self,
        base_url: str,
        username: Optional[str] = None,
        password: Optional[str] = None,
        verify: Union[bool, str] = True,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.verify = verify
        self.timeout = timeout
        self.session = requests.Session()
        # No proxies, no netrc, and the machine-wide REQUESTS_CA_BUNDLE must not replace our CA.
        self.session.trust_env = False
        self._authorization: Optional[str] = None
        self._tokens: Dict[Tuple[str, str], str] = {}
        self.token_fetches = 0

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP with authentication ---------------------------------------------------------
    def request(
        self, method: str, path: str, *, headers: Optional[Dict[str, str]] = None, data: Any = None
    ) -> requests.Response:
        """Send *method* to *path* (relative to the base URL, or absolute); answer a 401 challenge once."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        response = self._send(method, url, headers, data)
        challenge = response.headers.get("WWW-Authenticate")
        if response.status_code == 401 and challenge and self._authorize(challenge):
            if hasattr(data, "seek"):
                data.seek(0)
            response = self._send(method, url, headers, data)
        return response

    def _send(self, method: str, url: str, headers: Optional[Dict[str, str]], data: Any) -> requests.Response:
        all_headers = dict(headers or {})
        if self._authorization:
            all_headers["Authorization"] = self._authorization
        return self.session.request(
            method, url, headers=all_headers, data=data, verify=self.verify, timeout=self.timeout
        )

    def _authorize(self, challenge: str) -> bool:
        """Set the Authorization header the challenge asks for; False when there is nothing to offer."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.username is None:
                return False
            pair = f"{self.username}:{self.password or ''}".encode()
            self._authorization = "Basic " + base64.b64encode(pair).decode()
            return True
        if scheme != "bearer" or "realm" not in params:
            raise RegistryClientError(f"unsupported authentication challenge: {challenge}")
        key = (params.get("service", ""), params.get("scope", ""))
        if key not in self._tokens:
            self._tokens[key] = self.fetch_token(params["realm"], params.get("service"), params.get("scope"))
        self._authorization = f"Bearer {self._tokens[key]}"
        return True

    def fetch_token(self, realm: str, service: Optional[str], scope: Optional[str]) -> str:
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        auth = (self.username, self.password or "") if self.username is not None else None
        self.token_fetches += 1
        response = self.session.get(realm, params=query, auth=auth, verify=self.verify, timeout=self.timeout)
        if response.status_code != 200:
            raise RegistryClientError(f"token server {realm} answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryClientError(f"token server {realm} sent no token: {body}")
        return str(token)

    # -- API calls ------------------------------------------------------------------------
    def ping(self) -> requests.Response:
        return self.request("GET", "/v2/")

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code not in (200, 404):
            raise RegistryClientError(f"HEAD blob {digest} in {repository}: {response.status_code} {response.text}")
        return response.status_code == 200

    def upload_blob(self, repository: str, digest: str, source: Union[bytes, str]) -> bool:
        """Upload a blob (bytes, or a file path) monolithically unless it exists; True when uploaded."""
        if self.blob_exists(repository, digest):
            return False
        start = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        if start.status_code != 202 or "Location" not in start.headers:
            raise RegistryClientError(f"starting an upload to {repository}: {start.status_code} {start.text}")
        location = urljoin(self.base_url + "/", start.headers["Location"])
        location += ("&" if "?" in location else "?") + "digest=" + quote(digest, safe="")
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(source, bytes):
            headers["Content-Length"] = str(len(source))
            response = self.request("PUT", location, headers=headers, data=source)
        else:
            with open(source, "rb") as handle:
                headers["Content-Length"] = str(os.fstat(handle.fileno()).st_size)
                response = self.request("PUT", location, headers=headers, data=handle)
        if response.status_code != 201:
            raise RegistryClientError(f"uploading {digest} to {repository}: {response.status_code} {response.text}")
        return True

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest by tag or digest; returns its digest (checked against Docker-Content-Digest)."""
        response = self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", headers={"Content-Type": media_type}, data=data
        )
        if response.status_code != 201:
            raise RegistryClientError(f"PUT manifest {repository}:{reference}: {response.status_code} {response.text}")
        digest = sha256_digest(data)
        echoed = response.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise RegistryClientError(f"registry stored {repository}:{reference} as {echoed}, expected {digest}")
        return digest

    def get_manifest(self, repository: str, reference: str, accept: str = ACCEPT_ALL) -> requests.Response:
        return self.request("GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept})

    def get_blob(self, repository: str, digest: str) -> requests.Response:
        return self.request("GET", f"/v2/{repository}/blobs/{digest}")

    def delete_manifest(self, repository: str, digest: str) -> requests.Response:
        return self.request("DELETE", f"/v2/{repository}/manifests/{digest}")

    def tags(self, repository: str) -> List[str]:
        response = self.request("GET", f"/v2/{repository}/tags/list")
        if response.status_code != 200:
            raise RegistryClientError(f"tags of {repository}: {response.status_code} {response.text}")
        return list(response.json().get("tags") or [])


@dataclass
class PushResult:
    """What ``push`` sent: the manifest (or index) and, per image, config and layers."""

    repository: str
    tag: Optional[str]
    fmt: str
    media_type: str
    digest: str
    manifest: bytes
    config_digest: Optional[str] = None
    layers: List[Layer] = field(default_factory=list)
    platform: Optional[str] = None
    children: List["PushResult"] = field(default_factory=list)
    uploaded: List[str] = field(default_factory=list)

    @property
    def image_id(self) -> Optional[str]:
        return self.config_digest

    @property
    def layer_digests(self) -> List[str]:
        return [layer.digest for layer in self.layers]

    @property
    def diff_ids(self) -> List[str]:
        return [layer.diff_id for layer in self.layers]

    def child(self, platform: str) -> "PushResult":
        for child in self.children:
            if child.platform == platform:
                return child
        raise KeyError(f"no {platform} manifest in {self.repository}@{self.digest}")


def push(
    client: RegistryClient, repository: str, target: Target, tag: Optional[str] = "latest", fmt: str = "oci"
) -> PushResult:
    """Push *target* (blobs first, then manifests; an index after its children) and tag it."""
    if isinstance(target, Index):
        children = [_push_image(client, repository, image, None, fmt) for image in target.images]
        data = target.manifest_bytes(fmt)
        digest = client.put_manifest(repository, tag or sha256_digest(data), data, target.media_type(fmt))
        uploaded = [d for child in children for d in child.uploaded]
        return PushResult(
            repository, tag, fmt, target.media_type(fmt), digest, data, children=children, uploaded=uploaded
        )
    return _push_image(client, repository, target, tag, fmt)


def _push_image(client: RegistryClient, repository: str, image: Image, tag: Optional[str], fmt: str) -> PushResult:
    uploaded = []
    for layer in image.layers:
        if client.upload_blob(repository, layer.digest, image.blob_path(layer.digest)):
            uploaded.append(layer.digest)
    if client.upload_blob(repository, image.config_digest, image.config_bytes):
        uploaded.append(image.config_digest)
    data = image.manifest_bytes(fmt)
    digest = client.put_manifest(repository, tag or sha256_digest(data), data, image.media_type(fmt))
    return PushResult(
        repository,
        tag,
        fmt,
        image.media_type(fmt),
        digest,
        data,
        config_digest=image.config_digest,
        layers=list(image.layers),
        platform=str(image.platform),
        uploaded=uploaded,
    )
