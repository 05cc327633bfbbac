"""What ``docker info`` shows, from the daemon's ``/info`` and ``/version`` answers."""

from typing import Any, Dict, List


def _text(data: Dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _count(data: Dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def registry_mirrors(info: Dict[str, Any]) -> List[str]:
    """The mirrors the daemon uses, as ``docker info`` prints them (with a trailing '/')."""
    registry = info.get("RegistryConfig") or {}
    mirrors = registry.get("Mirrors")
    if not mirrors:
        index = (registry.get("IndexConfigs") or {}).get("docker.io") or {}
        mirrors = index.get("Mirrors") or []
    return [str(url) for url in mirrors]


def insecure_registries(info: Dict[str, Any]) -> List[str]:
    """Insecure registries the way the docker CLI lists them: hosts first, then CIDRs (127.0.0.0/8 included)."""
    registry = info.get("RegistryConfig") or {}
    hosts = sorted(
        str(index.get("Name") or name)
        for name, index in (registry.get("IndexConfigs") or {}).items()
        if isinstance(index, dict) and index.get("Secure") is False
    )
    cidrs = [str(cidr) for cidr in registry.get("InsecureRegistryCIDRs") or []]
    return hosts + cidrs


def summarize(info: Dict[str, Any], version: Dict[str, Any]) -> Dict[str, Any]:
    """The facts an operator reads in ``docker info`` / ``docker version``, with snake_case names."""
    runtimes = info.get("Runtimes") or {}
    return {
        "server_version": _text(info, "ServerVersion") or _text(version, "Version"),
        "api_version": _text(version, "ApiVersion"),
        "min_api_version": _text(version, "MinAPIVersion"),
        "git_commit": _text(version, "GitCommit"),
        "go_version": _text(version, "GoVersion"),
        "name": _text(info, "Name"),
        "id": _text(info, "ID"),
        "operating_system": _text(info, "OperatingSystem"),
        "os_type": _text(info, "OSType"),
        "architecture": _text(info, "Architecture"),
        "kernel_version": _text(info, "KernelVersion"),
        "ncpu": _count(info, "NCPU"),
        "mem_total": _count(info, "MemTotal"),
        "storage_driver": _text(info, "Driver"),
        "docker_root_dir": _text(info, "DockerRootDir"),
        "logging_driver": _text(info, "LoggingDriver"),
        "cgroup_driver": _text(info, "CgroupDriver"),
        "cgroup_version": _text(info, "CgroupVersion"),
        "default_runtime": _text(info, "DefaultRuntime"),
        "runtimes": sorted(runtimes) if isinstance(runtimes, dict) else [],
        "live_restore_enabled": bool(info.get("LiveRestoreEnabled")),
        "debug": bool(info.get("Debug")),
        "experimental": bool(info.get("ExperimentalBuild")),
        "security_options": [str(item) for item in info.get("SecurityOptions") or []],
        "registry_mirrors": registry_mirrors(info),
        "insecure_registries": insecure_registries(info),
        "index_server_address": _text(info, "IndexServerAddress"),
        "http_proxy": _text(info, "HttpProxy"),
        "https_proxy": _text(info, "HttpsProxy"),
        "no_proxy": _text(info, "NoProxy"),
        "labels": [str(item) for item in info.get("Labels") or []],
        "containers": _count(info, "Containers"),
        "containers_running": _count(info, "ContainersRunning"),
        "containers_paused": _count(info, "ContainersPaused"),
        "containers_stopped": _count(info, "ContainersStopped"),
        "images": _count(info, "Images"),
        "warnings": [str(item) for item in info.get("Warnings") or []],
    }


def missing_mirrors(reported: List[str], wanted: List[str]) -> List[str]:
    """Wanted mirrors the daemon does not report (compared without trailing slashes)."""
    have = {url.rstrip("/") for url in reported}
    return [url for url in wanted if url.rstrip("/") not in have]
