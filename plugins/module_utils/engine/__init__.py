# Helpers of the Docker engine modules (engine_repo, daemon_json, engine_info):
# pure functions for repository files, daemon.json and `docker info`, and a
# small HTTP client for the daemon's unix socket.  Standard library only.
