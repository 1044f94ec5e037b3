"""One error tree. Driver exceptions are translated into these at the adapter boundary."""

from __future__ import annotations


class ObservatoryError(Exception):
    """Base of every error the observatory raises on purpose."""


class BackendUnavailable(ObservatoryError):
    """A backend (bus, store, cache) cannot be reached right now; retrying later may work."""

    backend = "backend"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.backend} unavailable: {message}")


class BusUnavailable(BackendUnavailable):
    backend = "message bus"


class StoreUnavailable(BackendUnavailable):
    backend = "job store"


class EventStoreUnavailable(BackendUnavailable):
    backend = "event store"


class CacheUnavailable(BackendUnavailable):
    backend = "cache"


class ShuttingDown(BackendUnavailable):
    """This replica is stopping and took the request too late to handle it: nothing of it was stored."""

    backend = "this replica"


class SchemaTooNew(ObservatoryError):
    """A database holds a schema revision this code does not know: it was migrated by a newer release."""


class InvalidSubmission(ObservatoryError):
    """A submission failed validation; `details` are (loc, msg) pairs relative to the request body."""

    def __init__(self, message: str, details: list[tuple[list[str | int], str]]) -> None:
        super().__init__(message)
        self.details = details


class JobNotFound(ObservatoryError):
    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} not found")


class JobFailed(ObservatoryError):
    """Raised by a handler to fail an attempt with a clean message (no traceback stored).

    The attempt is retried with backoff unless `permanent`, which fails the job for good (FAILED)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class JobConflict(ObservatoryError):
    """The job's current state does not allow the request (e.g. cancelling a finished job)."""


class Unauthorized(ObservatoryError):
    """No usable API key (missing, unknown, revoked or expired): HTTP 401."""


class Forbidden(ObservatoryError):
    """A valid API key without the scope the request needs: HTTP 403."""


class RateLimited(ObservatoryError):
    """A key submitted faster than its rate: HTTP 429 with Retry-After."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(RateLimited):
    """Too many unfinished jobs to accept more now: HTTP 503 with Retry-After."""
