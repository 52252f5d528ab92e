"""One error hierarchy. Each error has an HTTP `status`, a stable `code`, and names the field at fault.

API surfaces render these in their own wire shape; the CLI prints `message`.
"""

from __future__ import annotations

from typing import Any


class SolventError(Exception):
    """Base class: every error Solvent raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, value: Any = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        out.update(self.extra)
        return out


class BadRequest(SolventError):
    status = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    """A request field has a value that is not allowed."""

    status = 422
    code = "validation_error"


class InvalidImage(BadRequest):
    """An input image is unreadable, too large, or does not match another input."""

    code = "invalid_image"


class UnsafeCheckpoint(BadRequest):
    """A pickle checkpoint was offered without the explicit unsafe flag."""

    code = "unsafe_checkpoint"


class CorruptCheckpoint(BadRequest):
    code = "corrupt_checkpoint"


class UnsupportedModel(BadRequest):
    code = "unsupported_model"


class IncompatibleLora(BadRequest):
    code = "incompatible_lora"


class IncompatibleAdapter(BadRequest):
    """An adapter (ControlNet, …) made for another family than the request's model."""

    code = "incompatible_adapter"


class Unauthorized(SolventError):
    status = 401
    code = "unauthorized"


class PaymentRequired(SolventError):
    """Not enough credits (or a key's own credit cap reached); says the price, the balance and how to top up."""

    status = 402
    code = "insufficient_credits"


class Forbidden(SolventError):
    status = 403
    code = "forbidden"


class TooManyRequests(SolventError):
    """Back-pressure or a rate limit; `retry_after` (seconds) is sent as `Retry-After`."""

    status = 429
    code = "too_many_requests"


class NotFound(SolventError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class LoraNotFound(NotFound):
    code = "lora_not_found"


class Conflict(SolventError):
    status = 409
    code = "conflict"


class Cancelled(SolventError):
    """The caller cancelled the work; raised between denoising steps."""

    status = 409
    code = "canceled"


class OutOfMemory(SolventError):
    """The device ran out of memory; memory has been freed and the next request may succeed."""

    status = 503
    code = "out_of_memory"


class ModelTooLarge(SolventError):
    """A model needs more memory than the cache budget or the device has; a setting must change first."""

    status = 503
    code = "model_too_large"


class Offline(SolventError):
    """The operation needs the network and this machine is offline."""

    status = 503
    code = "offline"


class EngineError(SolventError):
    status = 500
    code = "engine_error"


class LeaseLost(Conflict):
    """The worker no longer holds this job's lease (it expired and the job moved on)."""

    code = "lease_lost"


class RemoteError(SolventError):
    """A Solvent server answered a worker's call with an error; `status` is the server's."""

    code = "server_error"

    def __init__(self, message: str, *, status: int = 500, **kw: Any):
        super().__init__(message, **kw)
        self.status = status
