"""Device choice, dtypes, memory accounting and out-of-memory recovery."""

from __future__ import annotations

import gc
import resource
import sys

import torch

from ..errors import ValidationFailed


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' info chatter and progress bars (Solvent draws its own)."""
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA, then MPS, then CPU — or exactly the device named."""
    if preference and preference != "auto":
        try:
            return torch.device(preference)
        except RuntimeError as e:
            raise ValidationFailed(f"`device` {preference!r} is not a torch device: {e}", field="device") from e
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    """fp16 on GPUs, fp32 on the CPU (half precision on CPU is slow and inexact)."""
    if preference and preference != "auto":
        if preference not in _DTYPES:
            raise ValidationFailed(
                f"`dtype` must be one of auto, {', '.join(_DTYPES)} but is {preference!r}.", field="dtype"
            )
        return _DTYPES[preference]
    return torch.float32 if device.type == "cpu" else torch.float16


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}.get(dtype, str(dtype))


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    """Return cached blocks to the driver (after an eviction or an out-of-memory error)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()
    elif device.type == "mps":
        torch.mps.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: allocated on CUDA since `reset_peak`; the process's peak RSS elsewhere."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.driver_allocated_memory())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def module_bytes(*modules) -> int:
    total = 0
    for m in modules:
        if m is None or not hasattr(m, "parameters"):
            continue
        total += sum(p.numel() * p.element_size() for p in m.parameters())
        total += sum(b.numel() * b.element_size() for b in m.buffers())
    return total
