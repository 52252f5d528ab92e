"""The generation vocabulary, shared by every layer and free of torch: what a request is and how it is named.

Model families, the sampler table, `GenerationRequest`/`Usage` and the typed `JobSpec`, seed bounds,
prompt syntax (weights, 75-token chunks, token counting with the shipped CLIP files), input-image decoding
under limits, and PNG/infotext metadata. The engine builds schedulers and encodes prompts from these; the
API, workers and ledger read them. Importing this package never imports torch, diffusers or transformers.
"""

from .families import FAMILIES, Family, get_family
from .metadata import encode_image, infotext, parse_infotext, read_metadata
from .request import (
    MAX_SEED,
    BatchPart,
    GenerationRequest,
    GenerationResult,
    Hires,
    LoraSpec,
    Usage,
    batch_parts,
    part_ms,
    random_seed,
)
from .samplers import SAMPLERS, Sampler, resolve_sampler
from .spec import JobSpec

__all__ = [
    "FAMILIES",
    "MAX_SEED",
    "SAMPLERS",
    "BatchPart",
    "Family",
    "GenerationRequest",
    "GenerationResult",
    "Hires",
    "JobSpec",
    "LoraSpec",
    "Sampler",
    "Usage",
    "batch_parts",
    "encode_image",
    "get_family",
    "infotext",
    "parse_infotext",
    "part_ms",
    "random_seed",
    "read_metadata",
    "resolve_sampler",
]
