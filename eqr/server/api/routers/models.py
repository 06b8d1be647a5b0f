"""``GET /v1/models`` and ``GET /v1/models/{name}``: what is served, its defaults and limits."""

from __future__ import annotations

from fastapi import APIRouter

from eqr.server.api.deps import BrokerDep, model_card
from eqr.server.api.schemas import ErrorResponse, ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Served models")
async def list_models(broker: BrokerDep) -> ModelList:
    """Every served model with its task, board, defaults and caps; the first is the default model."""
    return ModelList(models=[ModelInfo.from_card(card) for card in broker.cards.values()])


@router.get(
    "/{name}",
    response_model=ModelInfo,
    responses={404: {"model": ErrorResponse, "description": "not served here"}},
    summary="One served model",
)
async def get_model(name: str, broker: BrokerDep) -> ModelInfo:
    return ModelInfo.from_card(model_card(name, broker))
