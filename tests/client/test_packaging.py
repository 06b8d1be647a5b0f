"""The SDK stays light and in step with the server: its own dependencies, no torch, the same JSON."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import eqr_client.types as client_types
from eqr.server.api import schemas

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"


def test_client_depends_only_on_httpx_and_pydantic():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"]}
    assert project["name"] == "eqr-client" and names == {"httpx", "pydantic"}


def test_importing_the_client_loads_neither_torch_nor_the_server():
    code = "import sys, eqr_client; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'eqr')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("client_model", "server_model"),
    [
        (client_types.SolveResult, schemas.SolveResponse),
        (client_types.Timings, schemas.Timings),
        (client_types.IterationEvent, schemas.IterationData),
        (client_types.Job, schemas.JobView),
        (client_types.ErrorBody, schemas.ErrorBody),
        (client_types.BatchItem, schemas.BatchItem),
        (client_types.BatchResult, schemas.BatchResponse),
        (client_types.ModelInfo, schemas.ModelInfo),
        (client_types.ModelList, schemas.ModelList),
        (client_types.Health, schemas.Health),
        (client_types.Readiness, schemas.Ready),
    ],
)
def test_client_types_mirror_the_server_schemas(client_model: type[BaseModel], server_model: type[BaseModel]):
    assert set(client_model.model_fields) == set(server_model.model_fields)
