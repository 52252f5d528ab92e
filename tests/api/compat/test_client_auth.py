"""Auth as clients send it: HTTP Basic whose password is the key, whose user name is (`key:`), or whose whole
credential is a bare key (open-webui); `WWW-Authenticate: Basic` on A1111's 401s; the operator's setting that lets
credential-less A1111 requests (LibreChat's SD tool) act as one key — off by default, generate and read at most."""

from __future__ import annotations

import base64

import httpx
import pytest
import webuiapi
from starlette.requests import Request

from solvent.accounts import create_key, revoke_key
from solvent.api.deps import current_principal
from tests.api.compat.test_clients import Live


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = Live(tmp_path_factory.mktemp("auth"))
    yield server
    server.close()


def _basic(credential: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}


def test_basic_credentials_in_every_shape_clients_send(live):
    for credential in (f"user:{live.key}", live.key, f"{live.key}:"):
        r = httpx.get(f"{live.base}/sdapi/v1/sd-models", headers=_basic(credential))
        assert r.status_code == 200 and r.json()[0]["title"], credential
    r = httpx.get(f"{live.base}/sdapi/v1/sd-models", headers=_basic("user:sk-wrong"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    api = webuiapi.WebUIApi(baseurl=f"{live.base}/sdapi/v1")
    api.set_auth("anyone", live.key)
    assert api.get_sd_models()[0]["model_name"]


def test_a1111_asks_for_basic_and_the_native_api_does_not(live):
    r = httpx.get(f"{live.base}/sdapi/v1/options")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="solvent"'
    assert r.json()["error"] == "unauthorized"
    r = httpx.get(f"{live.base}/api/jobs")  # no browser login prompt over the studio's own API
    assert r.status_code == 401 and "www-authenticate" not in r.headers


def test_credential_less_a1111_requests_act_as_the_operators_key_when_set(live):
    org, _ = live.new_org("payg", credits=100)
    key, secret = create_key(live.services.db, org, "librechat", ("generate", "read", "admin"))
    body = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2}
    assert httpx.post(f"{live.base}/sdapi/v1/txt2img", json=body, timeout=120).status_code == 401  # off by default
    live.services.settings.a1111_anonymous_key_id = key.id
    try:
        r = httpx.post(f"{live.base}/sdapi/v1/txt2img", json=body, timeout=120)
        assert r.status_code == 200 and r.json()["images"], r.text
        jobs = httpx.get(f"{live.base}/api/jobs", headers={"Authorization": f"Bearer {secret}"}).json()["jobs"]
        assert len(jobs) == 1 and jobs[0]["state"] == "succeeded"  # in the key's organisation, on its credits
        # admin is never granted without credentials, whatever the key allows
        scope = {"type": "http", "method": "POST", "path": "/sdapi/v1/txt2img", "headers": [], "query_string": b"",
                 "scheme": "http", "server": ("127.0.0.1", 80)}
        p = current_principal(Request(scope), live.services)
        assert (p.org_id, p.key_id, p.scopes) == (org, key.id, ("generate", "read"))
        # a wrong credential is still refused: the setting covers only requests that send none
        assert httpx.get(f"{live.base}/sdapi/v1/sd-models", headers=_basic("x:sk-wrong")).status_code == 401
        # and only A1111's surface
        assert httpx.get(f"{live.base}/api/jobs").status_code == 401
        revoke_key(live.services.db, key.id)
        assert httpx.post(f"{live.base}/sdapi/v1/txt2img", json=body, timeout=120).status_code == 401
    finally:
        live.services.settings.a1111_anonymous_key_id = None
