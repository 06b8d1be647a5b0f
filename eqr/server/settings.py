"""Server configuration: one object read from ``EQR_*`` environment variables and ``eqr serve`` flags.

Defaults suit a 2-core CPU serving the bundled small models: as many slots as fill the device and
no more (``eqr.runtime.step.preferred_slots``: 16 there), torch's own thread count, a breadth cap
that admits the paper's protocol (128 trajectories; the queue bound still applies), and a bounded
queue so overload becomes a fast 429 instead of unbounded latency.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from eqr.model.bundled import default_model_dirs


class Settings(BaseSettings):
    """Everything ``eqr serve`` needs; each field is also the env var ``EQR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EQR_", extra="ignore", protected_namespaces=())

    host: str = Field("127.0.0.1", description="interface to bind")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one)")
    model: Annotated[list[Path], NoDecode] = Field(
        default_factory=default_model_dirs,
        min_length=1,
        description="model folder(s) to serve (config.json + weights); repeat the flag or separate with commas; "
        "the first is the default model unless --default-model names another",
    )
    model_name: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="names clients use in the `model` field, one per model folder in order; default: folder names",
    )
    default_model: str | None = Field(
        None,
        description="the model of a request that names none, in eqr serve and eqr api alike; default: the name "
        "of the first model folder (--model, else $EQR_MODEL, else the bundled sudoku-small)",
    )
    device: str = Field("cpu", description="torch device of the slot pool")
    slots: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="slot pool capacity (trajectories advanced per step); default: what fills the device "
        "(CPU: cores x the fast step's chunk, 16 on 2 cores for the bundled model; CUDA: 256)",
    )
    max_queue: int = Field(1024, ge=1, description="queued trajectories before new work gets 429")
    max_depth: int = Field(256, ge=1, description="cap on a request's iteration budget")
    max_breadth: int = Field(128, ge=1, description="cap on a request's trajectories (128: the paper's protocol)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default: torch's own choice")
    scheduler: Literal["fair", "fcfs"] = Field(
        "fair",
        description="who holds the slots: fair (preemptive, least attained service first, shares per client and "
        "request, idle slots used by breadth on demand and verified restarts) or fcfs (first come, a trajectory "
        "keeps its slot until it ends); docs/scheduling.md",
    )
    max_saved_state_bytes: int = Field(
        256 << 20,
        ge=0,
        description="host memory for preempted trajectories' state (fair scheduler); beyond it new work waits, "
        "and the queue's 429 applies",
    )
    job_ttl_s: float = Field(600.0, gt=0, description="how long a finished async job stays readable")
    max_body_bytes: int = Field(1_048_576, ge=1, description="largest accepted request body")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's headers must arrive within this long (from its first byte), else 408"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="a request's body must arrive within this long after its headers, else 408"
    )
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM: how long running work may finish")
    stall_timeout_s: float = Field(30.0, gt=0, description="/readyz fails when work waits and no step ran this long")
    engine_error_window_s: float = Field(
        10.0, ge=0, description="/readyz fails this long after a failed engine step, unless a step succeeds since"
    )
    # -- security and per-client limits (README "Security and limits"); a client is its API key, else its IP
    api_keys: SecretStr | None = Field(None, description="comma-separated API keys; any set: /v1 needs one")
    api_keys_file: Path | None = Field(None, description="file of API keys, one a line ('#' comments)")
    rate_limit_per_s: float = Field(0.0, ge=0, description="requests per second per client (token bucket); 0: off")
    rate_limit_burst: int = Field(0, ge=0, description="token bucket size; 0: the rate, rounded up")
    max_in_flight_per_client: int = Field(0, ge=0, description="requests one client may have running; 0: off")
    auth_failures_per_min: int = Field(
        30,
        ge=0,
        description="failed API-key attempts per minute, per address and key and in different keys per address, "
        "before 429; 0: off",
    )
    sse_heartbeat_s: float = Field(
        15.0, gt=0, description="a stream with no event for this long gets a ': pending' (or ': running') comment"
    )
    cors_origins: str = Field(
        "",
        description="comma-separated origins (scheme://host[:port]) whose web pages may call the API, '*' for any; "
        "empty: CORS off",
    )
    gzip_min_bytes: int = Field(
        1024, ge=0, description="gzip responses at least this large for clients that accept it (never streams); 0: off"
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    @field_validator("model", "model_name", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        """One value, or several separated by commas (an environment variable, or one flag), is a list;
        so is a list of such values (a repeated flag: ``--model a,b --model c``)."""
        items = [value] if isinstance(value, (str, Path)) else value
        if not isinstance(items, list):
            return value
        return [part.strip() for item in items for part in str(item).split(",") if part.strip()]

    @model_validator(mode="after")
    def _one_name_per_model(self) -> Settings:
        if len(self.model_name) > len(self.model):
            raise ValueError(f"{len(self.model_name)} model names for {len(self.model)} model folder(s)")
        names = self.served_names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"two served models are both named {repeated[0]!r}; give each a --model-name")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        bad = [o for o in _split(value) if o != "*" and not re.fullmatch(r"https?://[^/\s]+", o)]
        if bad:
            raise ValueError(f"CORS origins are '*' or scheme://host[:port] with no path, got {bad}")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    @property
    def default_model_name(self) -> str:
        """The default model: ``default_model``, else the first of :attr:`served_names`. The same rule in
        both modes, so it never depends on which worker happens to answer first or what it is named."""
        return self.default_model or self.served_names[0]

    @property
    def served_names(self) -> list[str]:
        """The public model names, in the order of ``model``: explicit, else the folder's name (``sudoku-small``)."""
        return [*self.model_name, *(Path(m).name for m in self.model[len(self.model_name) :])]


def _split(items: str) -> list[str]:
    return [item.strip().rstrip("/") for item in items.split(",") if item.strip()]
