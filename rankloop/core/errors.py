"""One error hierarchy for the whole project.

Every error rankloop raises on purpose derives from :class:`RankloopError`; each subclass also
derives from the builtin it refines, so callers that only know ``ValueError`` or ``LookupError``
still catch it. The web tier maps these to JSON responses in one place (``http_status``).
"""

from __future__ import annotations


class RankloopError(Exception):
    """Base class of every error rankloop raises on purpose."""

    http_status = 500
    code = "internal_error"


class InvalidInput(RankloopError, ValueError):
    """Input that can never be valid as given (malformed ranking, bad settings)."""

    http_status = 400
    code = "invalid_input"


class NotFound(RankloopError, LookupError):
    """A campaign, round, task, object or model that does not exist."""

    http_status = 404
    code = "not_found"


class Unauthorized(RankloopError, PermissionError):
    """Missing or wrong credentials."""

    http_status = 401
    code = "unauthorized"


class TokenRevoked(Unauthorized):
    """An annotator token the campaign's owner revoked: told apart from an unknown one, so the
    task page can say so plainly."""

    code = "token_revoked"


class Forbidden(RankloopError, PermissionError):
    """Valid credentials that may not do this (a foreign task, another owner's campaign)."""

    http_status = 403
    code = "forbidden"


class Conflict(RankloopError, RuntimeError):
    """The request is well formed but the state forbids it now (late or repeated submission,
    a campaign already stopped, a ``tell`` without an ``ask``)."""

    http_status = 409
    code = "conflict"


class Gone(Conflict):
    """The thing existed but expired (a lease past its deadline, a closed round)."""

    http_status = 410
    code = "gone"


class ProtocolError(Conflict):
    """An object used out of order: ``tell`` without ``ask``, a double ``tell``."""

    code = "protocol_error"


class ConvergenceError(RankloopError, RuntimeError):
    """A numerical method did not converge; never returned as a quiet wrong answer."""

    code = "not_converged"


class StorageError(RankloopError, OSError):
    """The object store failed (after retries) or returned a corrupted object."""

    http_status = 503
    code = "storage_error"


class CorruptedObject(StorageError):
    """An object exists but cannot be decoded (a damaged optimizer state, say)."""

    code = "corrupted_object"


class ModelUnavailable(RankloopError, LookupError):
    """A generator or model id that cannot be loaded."""

    http_status = 422
    code = "model_unavailable"


class OutOfResources(RankloopError, MemoryError):
    """A job that does not fit the machine even after splitting it (GPU memory)."""

    http_status = 507
    code = "out_of_resources"


__all__ = [
    "Conflict",
    "ConvergenceError",
    "CorruptedObject",
    "Forbidden",
    "Gone",
    "InvalidInput",
    "ModelUnavailable",
    "NotFound",
    "OutOfResources",
    "ProtocolError",
    "RankloopError",
    "StorageError",
    "Unauthorized",
]
