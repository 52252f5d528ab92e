"""Building a diffusers scheduler from a sampler recipe of the vocabulary's table (`generation.samplers`)."""

from __future__ import annotations

from typing import Any

from ..generation.samplers import Sampler


def make_scheduler(sampler: Sampler, base_config: dict[str, Any], seed: int | None = None):
    """A fresh scheduler instance for one request (schedulers keep state: never share one).

    SDE samplers draw Brownian noise from their own generator: it is seeded from the request's
    seed so the same request gives the same image.
    """
    import diffusers

    cls = getattr(diffusers, sampler.scheduler)
    config = dict(base_config)
    # Keys a model's scheduler config may carry that another scheduler class would warn about.
    for key in ("_class_name", "_diffusers_version"):
        config.pop(key, None)
    options = dict(sampler.options)
    if sampler.scheduler == "DPMSolverSDEScheduler" and seed is not None:
        options["noise_sampler_seed"] = seed
    scheduler = cls.from_config(config, **options)
    if sampler.flow and sampler.ancestral and seed is not None:
        # SD3's and Flux's pipelines call `step` without the request's generator, so a stochastic flow sampler
        # would draw from torch's global generator; hand it one seeded from the request instead.
        generator = torch_generator(seed)
        step = scheduler.step

        def seeded_step(*args, **kwargs):
            kwargs.setdefault("generator", generator)
            return step(*args, **kwargs)

        scheduler.step = seeded_step
    return scheduler


def torch_generator(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(seed)
