"""Operational endpoints: /healthz, /readyz, /v1/models, /metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server.api.conftest import INFERENCE, MODEL_NAME, PUZZLE

METRICS = {
    "eqr_iterations_to_convergence": "histogram",
    "eqr_request_duration_seconds": "histogram",
    "eqr_queue_wait_seconds": "histogram",
    "eqr_step_duration_seconds": "histogram",
    "eqr_queue_depth": "gauge",
    "eqr_live_slots": "gauge",
    "eqr_slot_capacity": "gauge",
    "eqr_requests_in_flight": "gauge",
    "eqr_requests": "counter",  # exposed as eqr_requests_total
    "eqr_trajectories_evicted": "counter",
    "eqr_iterations": "counter",
    "eqr_rejections": "counter",
}


async def scrape(client: httpx.AsyncClient) -> dict:
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(r.text)}


def total(family, suffix: str = "", **labels: str) -> float:
    return sum(
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_health_and_readiness(client: httpx.AsyncClient):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200
    ready = {"status": "ready", "queue_depth": 0, "live_slots": 0, "capacity": 8, "in_flight": 0, "models": {"tiny": 1}}
    assert r.json() == ready


async def test_models_describe_the_served_model(client: httpx.AsyncClient):
    listed = (await client.get("/v1/models")).json()["models"]
    assert [m["name"] for m in listed] == [MODEL_NAME]
    info = (await client.get(f"/v1/models/{MODEL_NAME}")).json()
    assert info == listed[0]
    assert info["task"] == "sudoku" and info["arch"]["hidden_size"] == 16 and info["arch"]["parameters"] > 0
    assert {k: info["defaults"][k] for k in INFERENCE} == INFERENCE
    assert info["defaults"]["breadth"] == 1 and info["defaults"]["aggregate"] == "converged"
    assert info["caps"] == {"depth": 64, "breadth": 8, "slots": 8, "queue": 1024, "budget": 65_536}


async def test_metrics_expose_every_series_and_count_every_finished_request(client: httpx.AsyncClient):
    families = await scrape(client)
    assert {name: families[name].type for name in METRICS} == METRICS
    assert total(families["eqr_slot_capacity"]) == 8

    await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 2})
    await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 3, "breadth": 2, "stream": True})
    await client.post("/v1/solve/batch", json={"puzzles": [PUZZLE, PUZZLE, "bad"], "depth": 2})
    job = await client.post("/v1/jobs", json={"puzzle": PUZZLE, "depth": 2})
    while (await client.get(job.headers["Location"])).json()["status"] != "done":
        await asyncio.sleep(0.01)
    await client.post("/v1/solve", json={"puzzle": "1" * 81})  # rejected: never reaches the engine
    await client.post("/v1/solve", json={"puzzle": PUZZLE, "depth": 0})
    finished = 5  # 1 solve + 1 stream + 2 batch items + 1 job

    families = await scrape(client)
    hist = families["eqr_iterations_to_convergence"]
    assert total(hist, "_count") == finished == total(families["eqr_requests"], "_total")
    assert total(hist, "_count", status="max_iterations", task="sudoku", model=MODEL_NAME) == finished
    assert total(hist, "_sum") == 2 + 3 + 2 + 2 + 2  # tolerance 0: each ran its whole depth
    bounds = sorted({float(s.labels["le"]) for s in hist.samples if s.name.endswith("_bucket")})
    assert bounds[:4] == [1, 2, 3, 4] and bounds[-2:] == [64, float("inf")]  # integer buckets up to the cap
    assert total(families["eqr_request_duration_seconds"], "_count") == finished
    assert total(families["eqr_queue_wait_seconds"], "_count") == finished
    assert total(families["eqr_iterations"], "_total") == 2 + 3 * 2 + 2 + 2 + 2
    assert total(families["eqr_trajectories_evicted"], "_total", reason="depth") == 6
    assert total(families["eqr_step_duration_seconds"], "_count") > 0
    assert total(families["eqr_rejections"], "_total", reason="invalid_puzzle") == 1
    assert total(families["eqr_rejections"], "_total", reason="invalid_request") == 1
    assert total(families["eqr_requests_in_flight"]) == 0 and total(families["eqr_live_slots"]) == 0


async def test_openapi_documents_every_route_with_the_error_shape(client: httpx.AsyncClient):
    doc = (await client.get("/openapi.json")).json()
    assert {
        "/v1/solve",
        "/v1/solve/batch",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/models",
        "/healthz",
        "/readyz",
    } <= set(doc["paths"])
    solve = doc["paths"]["/v1/solve"]["post"]
    assert {"404", "413", "422", "429", "503"} <= set(solve["responses"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's 422 shape is never sent
    job = doc["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]
    assert job["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
