"""Queue semantics, on SQLite and on PostgreSQL alike."""

import threading
import time
from collections import Counter

import pytest

from solvent.errors import NotFound
from solvent.jobs import JobQueue, LeaseLost, QueueFull, QueueLimits
from solvent.storage import JobState


def q_(db, **kw):
    return JobQueue(db, QueueLimits(**kw))


def test_enqueue_get_and_tenant_isolation(db, orgs):
    a, b = orgs
    q = q_(db)
    job, created = q.enqueue(a, "solvent-tiny", {"prompt": "x"})
    assert created and job.state == JobState.queued and job.id.startswith("job_") and len(job.id) > 20
    assert q.get(a, job.id).params == {"prompt": "x"}
    with pytest.raises(NotFound):
        q.get(b, job.id)  # another organisation's job is a 404
    with pytest.raises(NotFound):
        q.cancel(b, job.id)
    assert job.created_at.tzinfo is not None


def test_idempotent_enqueue_even_when_racing(db, orgs):
    a, _ = orgs
    q = q_(db)
    first, created = q.enqueue(a, "m", {}, idempotency_key="k1")
    again, created2 = q.enqueue(a, "m", {}, idempotency_key="k1")
    assert created and not created2 and again.id == first.id
    results = []

    def post():
        results.append(q.enqueue(a, "m", {}, idempotency_key="race")[0].id)

    threads = [threading.Thread(target=post) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(set(results)) == 1 and q.counts()["queued"] == 2


def test_one_organisations_burst_cannot_starve_another(db, orgs):
    a, b = orgs
    q = q_(db, max_queued_per_org=1000)
    for i in range(100):
        q.enqueue(a, "m", {"i": i})
    single, _ = q.enqueue(b, "m", {"i": "b"})
    leased = [q.lease("w1").id for _ in range(3)]
    assert single.id in leased[:2]


def test_round_robin_alternates_between_organisations(db, orgs):
    a, b = orgs
    q = q_(db)
    for i in range(4):
        q.enqueue(a, "m", {"i": i})
        q.enqueue(b, "m", {"i": i})
    owners = [q.lease("w").org_id for _ in range(8)]
    assert owners[0::2] != owners[1::2] and Counter(owners[:4]) == Counter({a: 2, b: 2})


def test_priority_and_aging(db, orgs):
    a, b = orgs
    q = q_(db, aging_skips=2)
    low, _ = q.enqueue(a, "m", {}, priority=0)
    for _ in range(6):
        q.enqueue(b, "m", {}, priority=1)
    order = [q.lease("w").id for _ in range(7)]
    assert order[0] != low.id  # higher priority first ...
    assert order.index(low.id) <= 3  # ... but a job passed over twice gains a level and is not starved


def test_affinity_prefers_a_loaded_model(db, orgs):
    a, _ = orgs
    q = q_(db)
    q.enqueue(a, "cold", {})
    warm, _ = q.enqueue(a, "warm", {})
    assert q.lease("w", loaded=["warm"]).id == warm.id


def test_workers_only_get_models_they_serve(db, orgs):
    a, _ = orgs
    q = q_(db)
    q.enqueue(a, "big", {})
    assert q.lease("w", models=["small"]) is None
    assert q.lease("w", models=["big", "small"]).model == "big"


def test_lease_expiry_requeues_then_fails_with_a_reason(db, orgs):
    a, _ = orgs
    q = q_(db, lease_seconds=1, max_attempts=2)
    job, _ = q.enqueue(a, "m", {})
    assert q.lease("w1").id == job.id
    time.sleep(1.2)
    assert q.reap_expired() == 1
    j = q.get(a, job.id)
    assert j.state == JobState.queued and j.attempts == 1 and j.error_code == "worker_lost"
    assert q.lease("w2").id == job.id
    with pytest.raises(LeaseLost):
        q.complete(job.id, "w1", {})  # the vanished worker cannot complete it any more
    time.sleep(1.2)
    q.reap_expired()
    j = q.get(a, job.id)
    assert j.state == JobState.failed and j.attempts == 2 and "stopped responding" in j.error_message


def test_heartbeat_renews_and_reports_cancel(db, orgs):
    a, _ = orgs
    q = q_(db, lease_seconds=1)
    job, _ = q.enqueue(a, "m", {})
    q.lease("w")
    for _ in range(3):
        time.sleep(0.5)
        assert q.heartbeat(job.id, "w", progress=0.5) is False
    assert q.reap_expired() == 0
    q.cancel(a, job.id)
    assert q.heartbeat(job.id, "w") is True
    assert q.cancelled(job.id, "w").state == JobState.canceled


def test_cancel_queued(db, orgs):
    a, _ = orgs
    q = q_(db)
    job, _ = q.enqueue(a, "m", {})
    assert q.cancel(a, job.id).state == JobState.canceled
    assert q.lease("w") is None


def test_complete_exactly_once(db, orgs):
    a, _ = orgs
    q = q_(db)
    job, _ = q.enqueue(a, "m", {})
    q.lease("w")
    assert q.complete(job.id, "w", {"images": 1}).state == JobState.succeeded
    with pytest.raises(LeaseLost):
        q.complete(job.id, "w", {"images": 1})


def test_fail_with_retry_then_final(db, orgs):
    a, _ = orgs
    q = q_(db, max_attempts=2)
    job, _ = q.enqueue(a, "m", {})
    q.lease("w")
    assert q.fail(job.id, "w", "engine_error", "boom", retry=True).state == JobState.queued
    q.lease("w")
    j = q.fail(job.id, "w", "engine_error", "boom", retry=True)
    assert j.state == JobState.failed and j.error_message == "boom"


def test_release_returns_the_job_without_spending_an_attempt(db, orgs):
    a, _ = orgs
    q = q_(db)
    job, _ = q.enqueue(a, "m", {})
    q.lease("w")
    q.release(job.id, "w")
    j = q.get(a, job.id)
    assert j.state == JobState.queued and j.attempts == 0


def test_back_pressure(db, orgs):
    a, b = orgs
    q = q_(db, max_queued_per_org=2, max_queued_total=3)
    q.enqueue(a, "m", {})
    q.enqueue(a, "m", {})
    with pytest.raises(QueueFull) as e:
        q.enqueue(a, "m", {})
    assert e.value.status == 429 and e.value.extra["retry_after"] > 0
    q.enqueue(b, "m", {})
    with pytest.raises(QueueFull):
        q.enqueue(b, "m", {})  # the server-wide limit


def test_concurrent_workers_complete_each_job_exactly_once(db, orgs):
    a, b = orgs
    q = q_(db, max_queued_per_org=1000)
    ids = {q.enqueue(org, "m", {"i": i})[0].id for i in range(30) for org in (a, b)}
    leases, completions, errors = Counter(), Counter(), []

    def worker(name):
        try:
            while (job := q.lease(name)) is not None:
                leases[job.id] += 1
                q.complete(job.id, name, {"by": name})
                completions[job.id] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert set(completions) == ids and set(completions.values()) == {1} and set(leases.values()) == {1}
    assert q.counts()["succeeded"] == 60


def test_lease_like_claims_only_jobs_that_can_share_the_device_call(db, orgs):
    a, b = orgs
    q = q_(db)
    base = {"prompt": "x", "width": 64, "height": 64, "steps": 20, "cfg_scale": 4.0, "sampler": "euler", "loras": []}
    first = q.enqueue(a, "tiny", base)[0]
    same_b = q.enqueue(b, "tiny", {**base, "prompt": "another tenant, another prompt", "seed": 5})[0]
    q.enqueue(a, "tiny", {**base, "steps": 21})  # different steps
    q.enqueue(a, "other", base)  # different model
    q.enqueue(a, "tiny", {**base, "init_image_blob": "k"}, mode="img2img")  # image inputs never batch
    q.enqueue(a, "tiny", {**base, "loras": [{"name": "style", "weight": 1.0}]})  # different LoRAs
    same_a = q.enqueue(a, "tiny", {**base, "batch_size": 2})[0]
    same_late = q.enqueue(b, "tiny", base)[0]
    leased = q.lease("w", models=["tiny"])
    assert leased.id == first.id
    more = q.lease_like("w", leased, 2)  # oldest first, up to the limit
    assert [j.id for j in more] == [same_b.id, same_a.id]
    assert all(j.state == JobState.running and j.worker_id == "w" and j.attempts == 1 for j in more)
    assert [j.id for j in q.lease_like("w2", leased, 5)] == [same_late.id]
    assert q.lease_like("w2", leased, 5) == [] and q.lease_like("w", leased, 0) == []
    img = q.lease("w3", models=["tiny"])
    while img.mode != "img2img":
        img = q.lease("w3", models=["tiny"])
    assert q.lease_like("w3", img, 5) == []  # an image job runs alone
