"""``GET /v1/models`` and ``GET /v1/models/{name}``: what is served, its defaults and limits."""

from __future__ import annotations

from fastapi import APIRouter

from eqr.server.api.deps import BrokerDep
from eqr.server.api.errors import model_not_found
from eqr.server.api.schemas import ErrorResponse, ModelInfo, ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Served models")
async def list_models(broker: BrokerDep) -> ModelList:
    """Every model with its task, board, defaults, caps and live workers (0: served recently, none live now);
    ``default`` names the model of a request that names none."""
    workers = broker.live_workers()
    cards = broker.cards.values()
    return ModelList(default=broker.default_model, models=[ModelInfo.from_card(c, workers[c.name]) for c in cards])


@router.get(
    "/{name}",
    response_model=ModelInfo,
    responses={404: {"model": ErrorResponse, "description": "not known here"}},
    summary="One served model",
)
async def get_model(name: str, broker: BrokerDep) -> ModelInfo:
    card = broker.cards.get(name)
    if card is None:
        raise model_not_found(name, list(broker.cards))
    return ModelInfo.from_card(card, broker.live_workers()[name])
