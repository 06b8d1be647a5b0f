"""Command-line flags derived from :class:`~eqr.server.settings.Settings`: one source for names, defaults and help.

Every setting is an ``EQR_<NAME>`` environment variable and, for the commands it concerns, a flag
``--<name>`` (underscores as dashes, a trailing ``_s`` of seconds dropped: ``job_ttl_s`` is
``--job-ttl``). Flags default to None, so an unset flag leaves the environment variable or the
setting's default in force; pydantic validates the values, so ranges live only in ``Settings``.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from eqr.server.settings import Settings

# the model runner's settings (eqr serve, eqr worker)
ENGINE = (
    "model",
    "device",
    "slots",
    "max_queue",
    "max_depth",
    "max_breadth",
    "threads",
    "scheduler",
    "max_saved_state_bytes",
)
# the HTTP API's settings (eqr serve, eqr api)
API = (
    "default_model",
    "host",
    "port",
    "job_ttl_s",
    "max_body_bytes",
    "header_timeout_s",
    "body_timeout_s",
    "api_keys_file",
    "rate_limit_per_s",
    "rate_limit_burst",
    "max_in_flight_per_client",
    "auth_failures_per_min",
    "sse_heartbeat_s",
    "cors_origins",
    "gzip_min_bytes",
)
# secrets stay in the environment: a command line is visible to every user of the machine
ENV_ONLY = ("api_keys",)
# every other setting concerns every server process (eqr serve, api and worker)
COMMON = tuple(n for n in Settings.model_fields if n not in (*ENGINE, *API, *ENV_ONLY))


def flag_name(field: str) -> str:
    """``header_timeout_s`` → ``--header-timeout``; a rate (``_per_s``) keeps its unit."""
    name = field if field.endswith("_per_s") else field.removesuffix("_s")
    return "--" + name.replace("_", "-")


def _value_type(annotation: object) -> tuple[type, tuple[str, ...] | None, bool]:
    """The argparse type (and choices) of a setting's annotation, and whether the flag repeats:
    ``int | None`` → int, a Literal → choices, ``list[Path]`` → str, repeated."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list:
        kind, choices, _ = _value_type(typing.get_args(annotation)[0])
        return kind, choices, True
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if typing.get_origin(annotation) is typing.Literal:
        return str, tuple(typing.get_args(annotation)), False
    kind = args[0]
    return (str if kind is Path else kind), None, False  # type: ignore[return-value]


def add_settings_flags(parser: argparse.ArgumentParser, *groups: tuple[str, ...]) -> None:
    """Add a flag for each setting named in ``groups``, its help the setting's own description and default."""
    for group in groups:
        for name in group:
            info = Settings.model_fields[name]
            kind, choices, repeated = _value_type(info.annotation)
            default = info.get_default(call_default_factory=True)
            if isinstance(default, list):
                default = ", ".join(map(str, default))
            shown = "" if default in (None, "") else f"default {default}, "
            parser.add_argument(
                flag_name(name),
                dest=name,
                type=kind,
                action="append" if repeated else "store",
                choices=choices,
                metavar=None if choices else name.upper(),
                help=f"{info.description or name.replace('_', ' ')} ({shown}$EQR_{name.upper()})",
            )


def add_request_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag for every request field of :class:`~eqr.server.jobs.SolveParams` (but ``skip``), from its
    declaration: ``--breadth-mode on_demand``, ``--verify``/``--no-verify``, ``--budget 2000``... Each
    defaults to None (unset: the preset's or the model's value); the engine validates the values."""
    from eqr.server.jobs import field_specs

    for name, spec in field_specs().items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if spec.kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=spec.doc)
        else:
            kind = str if spec.choices else spec.kind
            parser.add_argument(flag, dest=name, type=kind, choices=spec.choices, default=None, help=spec.doc)


def request_fields(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The request fields the command line set (flags from :func:`add_request_flags` and any the command
    declares itself under the same names)."""
    from eqr.server.jobs import field_specs

    return {name: getattr(args, name) for name in field_specs() if getattr(args, name, None) is not None}
