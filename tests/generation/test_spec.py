"""The typed job spec and usage: what admission stores, the worker reads and the ledger prices."""

from hypothesis import given
from hypothesis import strategies as st

from solvent.generation import BatchPart, JobSpec, LoraSpec, Usage, batch_parts, part_ms


def test_a_spec_round_trips_through_the_jobs_table():
    spec = JobSpec(prompt="a red circle", model="m", width=64, height=96, steps=12, cfg_scale=3.5, sampler="euler",
                   seed=7, batch_size=2, strength=0.4, loras=[LoraSpec("detail", 0.8)], init_image_blob="b1",
                   price_mc=1200, plan="payg", terms={"commercial_use": True})
    again = JobSpec.from_params(spec.to_params())
    assert again == spec
    assert again.to_params()["loras"] == [{"name": "detail", "weight": 0.8}]


def test_old_rows_read_back_with_defaults_and_unknown_keys_ignored():
    spec = JobSpec.from_params({"prompt": "x", "batch_size": None, "future_field": 1})
    assert spec.images == 1 and spec.loras == [] and spec.terms == {} and spec.output_format == "png"


def test_the_public_view_hides_storage_keys_and_billing_internals():
    public = JobSpec(prompt="x", init_image_blob="secret-key", plan="payg", terms={"a": 1}).public()
    assert "init_image_blob" not in public and "plan" not in public and "terms" not in public


def test_to_request_carries_every_field():
    req = JobSpec(prompt="p", negative_prompt="n", model="m", width=64, height=64, steps=3, seed=5, batch_size=2,
                  loras=[LoraSpec("a", 0.5)]).to_request()
    assert (req.prompt, req.negative_prompt, req.model, req.steps, req.seed, req.batch_size) == ("p", "n", "m", 3, 5, 2)
    assert req.loras == [LoraSpec("a", 0.5)] and req.mode == "txt2img"


def test_usage_reads_back_what_a_worker_sent():
    u = Usage("cpu", "fp32", 1.25, 20, 20, 2, 8192, "m", "h", 0, batch=batch_parts(1000, [1, 3])[1])
    again = Usage.from_dict(u.to_dict())
    assert again == u and again.batch_part.ms == 1000 - 1000 * 1 // 4
    assert Usage.from_dict({"device_seconds": "junk", "images": 2}).device_seconds == 0.0
    assert Usage.from_dict(None).batch_part is None


def test_a_malformed_batch_part_is_refused():
    assert BatchPart.from_dict({"device_ms": 10, "work_before": 3, "work": 2, "total_work": 4}) is None
    assert BatchPart.from_dict({"device_ms": "x"}) is None


@given(st.integers(0, 10**9), st.lists(st.integers(1, 10**6), min_size=1, max_size=16))
def test_batch_parts_add_up_to_the_call_exactly(ms, works):
    assert sum(part_ms(p) for p in batch_parts(ms, works)) == ms


def test_jobs_with_units_image_prompts_or_a_refiner_never_batch():
    from solvent.generation import JobSpec

    plain = JobSpec(prompt="x", model="m", width=64, height=64)
    assert plain.batch_key() is not None and plain.batch_key() == JobSpec(prompt="y", model="m", width=64,
                                                                           height=64).batch_key()
    for extra in ({"controls": [{"model": "cn", "image_blob": "b"}]},
                  {"ip_adapters": [{"model": "ip", "scales": [1.0], "weight": 1.0, "image_blobs": ["b"]}]},
                  {"refiner": "r"}):
        assert JobSpec(prompt="x", model="m", width=64, height=64, **extra).batch_key() is None, extra
