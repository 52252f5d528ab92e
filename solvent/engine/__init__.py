"""The generation engine: models, samplers, prompts, images and usage. Touches no database or HTTP."""

from .families import FAMILIES, Family
from .metadata import encode_image, infotext, parse_infotext, read_metadata
from .pipeline import Engine, ProgressEvent
from .request import GenerationRequest, GenerationResult, LoraSpec, Usage
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
    "encode_image",
    "infotext",
    "parse_infotext",
    "read_metadata",
    "resolve_sampler",
]
