"""The app factory: surfaces and hooks are handed over by the composition root, never registered at import."""

from fastapi.testclient import TestClient

from solvent.api import create_app
from solvent.api.metrics import Metrics
from solvent.root import build_app


def test_error_shapes_belong_to_the_app_that_installed_them(services):
    full = TestClient(build_app(services))
    bare = TestClient(create_app(services, metrics=Metrics()))  # no compatible surfaces at all
    # OpenAI's shape on the app that has the OpenAI surface …
    body = full.post("/v1/images/generations", json={"prompt": "x"}).json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_api_key"
    # … and the native shape (no such route) on the one that does not, in the same process.
    bare_body = bare.post("/v1/images/generations", json={"prompt": "x"})
    assert bare_body.status_code == 404 and bare_body.json()["error"]["code"] == "not_found"
    assert "type" not in bare_body.json()["error"]


def test_the_metrics_hook_is_attached_by_the_root_only(services):
    before = list(services.queue.on_final)
    create_app(services, metrics=Metrics())
    assert services.queue.on_final == before  # the factory hooks nothing
    build_app(services)
    assert len(services.queue.on_final) == len(before) + 1
