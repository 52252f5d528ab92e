"""The generation engine: model store, loading, schedulers, prompt encoding, pipelines. No database, no HTTP.

The vocabulary it speaks (families, samplers by name, `GenerationRequest`, `Usage`, prompt syntax, metadata)
is `solvent.generation`, which imports without torch. `ModelStore` is light; `Engine` loads torch and
diffusers on first use.
"""

from .store import ModelRecord, ModelStore

__all__ = ["Engine", "ModelRecord", "ModelStore", "ProgressEvent"]


def __getattr__(name: str):
    if name in ("Engine", "ProgressEvent"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
