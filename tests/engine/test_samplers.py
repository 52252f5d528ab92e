import numpy as np
import pytest

from solvent.engine.schedulers import make_scheduler
from solvent.errors import ValidationFailed
from solvent.generation import SAMPLERS, GenerationRequest, resolve_sampler
from solvent.generation.samplers import stability_names

STABILITY = ["K_EULER", "K_EULER_ANCESTRAL", "K_DPMPP_2M", "K_DPMPP_2S_ANCESTRAL", "K_DPM_2", "K_DPM_2_ANCESTRAL",
             "K_HEUN", "K_LMS", "DDIM", "DDPM"]
A1111 = ["Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras", "DPM2", "DPM2 a", "Heun", "LMS",
         "DDIM", "UniPC", "PLMS", "LMS Karras", "DPM++ 2M SDE Karras"]


def test_every_stability_enum_value_maps():
    assert sorted(stability_names()) == sorted(STABILITY)
    for name in STABILITY:
        assert resolve_sampler(name).stability == name


@pytest.mark.parametrize("name", A1111)
def test_a1111_names_map(name):
    s = resolve_sampler(name)
    assert s.a1111[0] == name or name in s.a1111


def test_no_name_means_two_samplers_and_lookup_is_case_insensitive():
    owner = {}
    for s in SAMPLERS:
        for k in (s.name, *s.a1111, *([s.stability] if s.stability else [])):
            assert owner.setdefault(k.lower(), s.name) == s.name, k
    assert resolve_sampler("euler A").name == "euler_a"
    assert resolve_sampler("k_dpmpp_2m").name == "dpmpp_2m"


def test_unknown_sampler_names_the_field_and_value():
    with pytest.raises(ValidationFailed) as e:
        resolve_sampler("K_MAGIC")
    assert e.value.field == "sampler" and "'K_MAGIC'" in e.value.message


def test_karras_option_reaches_the_scheduler():
    base = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    sched = make_scheduler(resolve_sampler("DPM++ 2M Karras"), base)
    assert type(sched).__name__ == "DPMSolverMultistepScheduler" and sched.config.use_karras_sigmas
    sde = make_scheduler(resolve_sampler("DPM++ 2M SDE Karras"), base)
    assert sde.config.algorithm_type == "sde-dpmsolver++"


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    from solvent.config import Settings
    from solvent.root import build_engine

    return build_engine(Settings(home=tmp_path_factory.mktemp("home")))


@pytest.mark.parametrize("sampler", [s.name for s in SAMPLERS if not s.flow])  # flow ones: test_flow.py
def test_every_sampler_generates_deterministically(tiny_engine, sampler):
    req = GenerationRequest(prompt="a red circle", sampler=sampler, steps=4, seed=5)
    a = tiny_engine.generate(req)
    b = tiny_engine.generate(req)
    assert a.params["sampler"] == sampler
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert a.usage.steps_run >= 1
