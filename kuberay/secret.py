"""The credentials Secret: random passwords, and the connection URLs built from them.

It is never checked in: `observatory cluster up` creates it once (an existing one is kept, since the
databases were initialised with its passwords) and `observatory cluster secret` prints one for kubectl.
"""

from __future__ import annotations

import secrets
from typing import Any

from kuberay.profile import PROFILE, Profile
from observatory.keys import new_key

USER = "observatory"
ADMIN_KEY = "ADMIN_API_KEY"


def credentials(token: int = 24) -> dict[str, str]:
    pw = {name: secrets.token_urlsafe(token) for name in ("POSTGRES", "RABBITMQ", "MONGO", "REDIS", "GRAFANA_ADMIN")}
    return {
        **{f"{name}_PASSWORD": value for name, value in pw.items()},
        "AMQP_URL": f"amqp://{USER}:{pw['RABBITMQ']}@rabbitmq:5672/%2F",
        "POSTGRES_DSN": f"postgresql://{USER}:{pw['POSTGRES']}@postgres:5432/observatory",
        "MONGO_URL": f"mongodb://{USER}:{pw['MONGO']}@mongodb:27017/?authSource=admin",
        "REDIS_URL": f"redis://:{pw['REDIS']}@redis:6379/0",
        "WEBHOOK_SECRET": secrets.token_urlsafe(token),
        ADMIN_KEY: new_key(),  # every scope; the gateway stores its digest at start (OBSERVATORY_ADMIN_KEY)
    }


def secret(profile: Profile = PROFILE, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": profile.secret,
            "namespace": profile.namespace,
            "labels": {"app.kubernetes.io/part-of": "observatory"},
        },
        "type": "Opaque",
        "stringData": data if data is not None else credentials(),
    }
