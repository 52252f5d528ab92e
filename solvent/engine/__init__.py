"""The generation engine: models, samplers, prompts, images and usage. Touches no database or HTTP.

Light modules (families, samplers, store, metadata, images) import without torch; `Engine` and
the pipeline code load torch and diffusers on first use.
"""

from .families import FAMILIES, Family
from .metadata import encode_image, infotext, parse_infotext, read_metadata
from .request import GenerationRequest, GenerationResult, LoraSpec, Usage, batch_parts, part_ms
from .samplers import SAMPLERS, Sampler, resolve_sampler
from .store import BUILTIN_ID, ModelRecord, ModelStore

__all__ = [
    "BUILTIN_ID",
    "FAMILIES",
    "SAMPLERS",
    "Engine",
    "Family",
    "GenerationRequest",
    "GenerationResult",
    "LoraSpec",
    "ModelRecord",
    "ModelStore",
    "ProgressEvent",
    "Sampler",
    "Usage",
    "batch_parts",
    "encode_image",
    "infotext",
    "parse_infotext",
    "part_ms",
    "read_metadata",
    "resolve_sampler",
]


def __getattr__(name: str):
    if name in ("Engine", "ProgressEvent"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
