"""One canonical sampler table: Solvent's names, Stability's enum, AUTOMATIC1111's names → a scheduler recipe.

Every name any API accepts resolves through `resolve_sampler`; nothing else maps names. A recipe is a
diffusers scheduler class name and its options; building the scheduler is the engine's (`engine.schedulers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationFailed
from .families import FLOW_ARCHITECTURES


@dataclass(frozen=True)
class Sampler:
    """One sampler: Solvent's name, the scheduler recipe (class and options), and its names elsewhere."""

    name: str  # Solvent's canonical name
    scheduler: str  # diffusers scheduler class name
    options: dict[str, Any] = field(default_factory=dict)
    a1111: tuple[str, ...] = ()  # AUTOMATIC1111 display name first, then its aliases
    stability: str | None = None  # Stability REST v1 enum value
    ancestral: bool = False
    flow: bool = False  # a flow-matching scheduler: runs SD3 and Flux only (and they run only these)
    only: tuple[str, ...] = ()  # the architectures that can run it, where not all of its kind can


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("euler", "EulerDiscreteScheduler", {}, ("Euler", "k_euler"), "K_EULER"),
    Sampler("euler_a", "EulerAncestralDiscreteScheduler", {}, ("Euler a", "k_euler_a"), "K_EULER_ANCESTRAL", True),
    Sampler("euler_karras", "EulerDiscreteScheduler", {"use_karras_sigmas": True}, ("Euler Karras",)),
    Sampler("heun", "HeunDiscreteScheduler", {}, ("Heun", "k_heun"), "K_HEUN"),
    Sampler("lms", "LMSDiscreteScheduler", {}, ("LMS", "k_lms"), "K_LMS"),
    Sampler("lms_karras", "LMSDiscreteScheduler", {"use_karras_sigmas": True}, ("LMS Karras", "k_lms_ka")),
    Sampler("dpm2", "KDPM2DiscreteScheduler", {}, ("DPM2", "k_dpm_2"), "K_DPM_2"),
    Sampler("dpm2_karras", "KDPM2DiscreteScheduler", {"use_karras_sigmas": True}, ("DPM2 Karras", "k_dpm_2_ka")),
    Sampler("dpm2_a", "KDPM2AncestralDiscreteScheduler", {}, ("DPM2 a", "k_dpm_2_a"), "K_DPM_2_ANCESTRAL", True),
    Sampler(
        "dpm2_a_karras", "KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True},
        ("DPM2 a Karras", "k_dpm_2_a_ka"), None, True,
    ),
    Sampler("dpmpp_2m", "DPMSolverMultistepScheduler", {}, ("DPM++ 2M", "k_dpmpp_2m"), "K_DPMPP_2M"),
    Sampler(
        "dpmpp_2m_karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True},
        ("DPM++ 2M Karras", "k_dpmpp_2m_ka"),
    ),
    Sampler(
        "dpmpp_2m_sde_karras", "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        ("DPM++ 2M SDE Karras", "k_dpmpp_2m_sde_ka"), None, True,
    ),
    Sampler(
        "dpmpp_2s_a", "DPMSolverSinglestepScheduler", {}, ("DPM++ 2S a", "k_dpmpp_2s_a"), "K_DPMPP_2S_ANCESTRAL",
    ),
    Sampler(
        "dpmpp_sde_karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True},
        ("DPM++ SDE Karras", "k_dpmpp_sde_ka"), None, True,
    ),
    Sampler("ddim", "DDIMScheduler", {}, ("DDIM",), "DDIM"),
    Sampler("ddpm", "DDPMScheduler", {}, ("DDPM",), "DDPM", True),
    Sampler("plms", "PNDMScheduler", {"skip_prk_steps": True}, ("PLMS",)),
    Sampler("unipc", "UniPCMultistepScheduler", {}, ("UniPC",)),
    Sampler("lcm", "LCMScheduler", {}, ("LCM",)),
    # Few-step models (SDXL-Turbo, SD-Turbo, Lightning, Hyper) want the last timestep first: "trailing" spacing
    # (A1111's "SGM Uniform" schedule).
    Sampler("euler_trailing", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"},
            ("Euler SGM Uniform", "euler_sgm_uniform")),
    Sampler("euler_a_trailing", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"},
            ("Euler a SGM Uniform", "euler_a_sgm_uniform"), None, True),
    # Flow matching (SD3, Flux): the model's own shift settings come with its scheduler config.
    Sampler("flow_euler", "FlowMatchEulerDiscreteScheduler", {}, ("Euler (flow)",), flow=True),
    Sampler("flow_euler_karras", "FlowMatchEulerDiscreteScheduler", {"use_karras_sigmas": True},
            ("Euler Karras (flow)",), flow=True),
    Sampler("flow_heun", "FlowMatchHeunDiscreteScheduler", {}, ("Heun (flow)",), flow=True, only=("sd3",)),
    Sampler("flow_lcm", "FlowMatchLCMScheduler", {}, ("LCM (flow)",), None, True, flow=True),
)

# What a flow-matching model runs when a client names a UNet sampler (AUTOMATIC1111/Forge and ComfyUI users keep
# their "Euler" for Flux). Names not here are refused for SD3 and Flux with the list of those that run.
FLOW_EQUIVALENTS = {"euler": "flow_euler", "euler_karras": "flow_euler_karras", "heun": "flow_heun",
                    "lcm": "flow_lcm", "euler_trailing": "flow_euler"}

_BY_KEY: dict[str, Sampler] = {}
for _s in SAMPLERS:
    for _key in (_s.name, *_s.a1111, *((_s.stability,) if _s.stability else ())):
        _BY_KEY[_key.lower()] = _s


def resolve_sampler(name: str, field_name: str = "sampler", architecture: str | None = None) -> Sampler:
    """Look a sampler up by any of its names (case-insensitive); with `architecture`, one that runs it.

    A flow-matching model (`sd3`, `flux`) takes the flow samplers, and the UNet names that have a flow
    equivalent (`Euler` → `flow_euler`); a UNet model refuses the flow samplers. Either refusal names what runs.
    """
    sampler = _BY_KEY.get(str(name).strip().lower())
    if sampler is None:
        raise ValidationFailed(
            f"`{field_name}` must be one of {', '.join(s.name for s in SAMPLERS)} (or their AUTOMATIC1111 / "
            f"Stability names) but is {name!r}.",
            field=field_name,
            value=name,
        )
    if architecture is None:
        return sampler
    flow = architecture in FLOW_ARCHITECTURES
    if flow and not sampler.flow:
        sampler = _BY_KEY.get(FLOW_EQUIVALENTS.get(sampler.name, ""), sampler)
    runs = samplers_for(architecture)
    if sampler.name not in runs:
        kind = "flow-matching" if flow else "UNet"
        raise ValidationFailed(
            f"`{field_name}` {name!r} does not run {architecture} models ({kind} samplers run them: "
            f"{', '.join(runs)}).", field=field_name, value=name)
    return sampler


def samplers_for(architecture: str) -> list[str]:
    """The samplers that run models of an architecture: the flow-matching ones for SD3 and Flux, the others for
    UNet models (each only where its `only` allows)."""
    flow = architecture in FLOW_ARCHITECTURES
    return [s.name for s in SAMPLERS if s.flow == flow and (not s.only or architecture in s.only)]


def stability_names() -> list[str]:
    return [s.stability for s in SAMPLERS if s.stability]
