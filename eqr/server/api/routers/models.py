"""``GET /v1/models`` and ``GET /v1/models/{name}``: what is served, its defaults and limits."""

from __future__ import annotations

from fastapi import APIRouter

from eqr.server.api.deps import BrokerDep, require_model
from eqr.server.api.schemas import ErrorResponse, ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Served models")
async def list_models(broker: BrokerDep) -> ModelList:
    return ModelList(models=[ModelInfo.from_card(broker.card)])


@router.get(
    "/{name}",
    response_model=ModelInfo,
    responses={404: {"model": ErrorResponse, "description": "not served here"}},
    summary="One served model",
)
async def get_model(name: str, broker: BrokerDep) -> ModelInfo:
    require_model(name, broker)
    return ModelInfo.from_card(broker.card)
