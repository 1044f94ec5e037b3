"""schemathesis hooks for the keyless fuzz run (SCHEMATHESIS_HOOKS=tests.fuzz_keyless)."""

from __future__ import annotations

from typing import Any

import schemathesis

PUBLIC = {"/healthz", "/readyz"}  # probes answer without a key


@schemathesis.check
def refused_without_a_key(ctx: Any, response: Any, case: Any) -> bool | None:
    """Without a key, every operation but the probes answers 401, whatever the request looks like (a method
    the path does not have is a 405 first: routing comes before any key is asked for)."""
    if case.operation.path in PUBLIC or case.method.upper() != case.operation.method.upper():
        return None
    if response.status_code != 401:
        raise AssertionError(f"{case.operation.label} answered {response.status_code} without a key, not 401")
    return None
