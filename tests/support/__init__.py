"""Helpers shared by tests and benchmarks (imported as ``support.<name>``).

Real fixtures for the runtime's registry and image code:

* ``registry``   -- Debian's ``docker-registry`` on a free loopback port: plain, htpasswd,
  TLS (throw-away CA), TLS+auth, bearer tokens; stop/start the same instance; mirrors.
* ``tokenserver`` -- Docker Hub's token flow (JWT, x5c or libtrust ``kid``), records requests.
* ``pki``        -- the throw-away CA (openssl) behind every TLS endpoint.
* ``oci``        -- the image builder: deterministic tar layers, configs, OCI/Docker
  manifests and indexes, OCI image layouts.  Independent of the runtime (the oracle).
* ``pusher``     -- a small Registry API v2 client (auth, TLS, monolithic upload) and ``push``.
* ``images``     -- the test images (busybox with whiteouts/opaque dirs, multi-platform;
  Debian, nginx, systemd) and the expected busybox tree.
* ``debian``     -- debootstrap and apt-in-an-overlay-chroot used by ``images``.
* ``cache``      -- the build cache under /var/tmp/berth-fixtures (keyed, atomic, locked).
* ``procs``      -- free ports, child processes started with setsid and stopped by pid.
* ``demo_registry`` -- ``scripts/demo-registry``.

The session fixtures built on these live in tests/integration/conftest.py.
"""
