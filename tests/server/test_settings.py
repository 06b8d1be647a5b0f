"""Server settings: EQR_* environment variables, ``eqr serve`` flags over them, early failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqr.model.bundled import BUNDLED_MODEL
from eqr.model.checkpoint import save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.server.cli import main
from eqr.server.settings import Settings

TINY = EqRConfig(hidden_size=16, expansion=2, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Capture the settings ``eqr serve`` would run with, instead of starting a server."""
    runs: list[Settings] = []
    monkeypatch.setattr("eqr.server.serve.run", lambda settings: runs.append(settings) or 0)
    return runs


def test_defaults_serve_the_bundled_model_locally(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("EQR_MODEL", raising=False)
    s = Settings()
    assert (s.host, s.port, s.model, s.served_model_name) == ("127.0.0.1", 8000, BUNDLED_MODEL, "sudoku-small")
    assert s.threads is None and s.max_depth >= 64 and s.job_ttl_s > 0 and s.max_body_bytes >= 100_000


def test_flags_override_environment_variables(served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = save_model(tmp_path / "tiny-cli", EqRNetwork(TINY))
    for name, value in {"MODEL": str(folder), "PORT": "9001", "SLOTS": "12", "JOB_TTL_S": "5"}.items():
        monkeypatch.setenv(f"EQR_{name}", value)
    assert main(["serve", "--port", "9100", "--max-depth", "32", "--threads", "1"]) == 0
    (s,) = served
    assert (s.port, s.slots, s.max_depth, s.threads, s.job_ttl_s) == (9100, 12, 32, 1, 5.0)
    assert s.model == folder and s.served_model_name == "tiny-cli"


def test_bad_model_folder_or_setting_fails_before_serving(served, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["serve", "--model", str(tmp_path / "nowhere")]) == 2
    assert "config.json: no such file" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "invalid setting" in err and "port" in err
    assert served == []


def test_api_keys_and_limits_come_from_flags_and_environment(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    folder = save_model(tmp_path / "tiny-keys", EqRNetwork(TINY))
    keys = tmp_path / "keys"
    keys.write_text("first-key\n")
    monkeypatch.setenv("EQR_API_KEYS", "env-key")
    monkeypatch.setenv("EQR_RATE_LIMIT_PER_S", "5")
    monkeypatch.setenv("EQR_MAX_IN_FLIGHT_PER_CLIENT", "4")
    assert main(["serve", "--model", str(folder), "--api-keys-file", str(keys)]) == 0
    (s,) = served
    assert s.api_keys_file == keys and s.api_keys is not None and s.api_keys.get_secret_value() == "env-key"
    assert (s.rate_limit_per_s, s.rate_limit_burst, s.max_in_flight_per_client) == (5.0, 0, 4)

    keys.write_text("# revoked everyone\n")  # an empty key file must not quietly open the server
    for command in (["serve", "--model", str(folder)], ["api"]):
        assert main([*command, "--api-keys-file", str(keys)]) == 2
        assert "holds no key" in capsys.readouterr().err
    assert main(["serve", "--model", str(folder), "--api-keys-file", str(tmp_path / "absent")]) == 2
    assert "cannot read the API keys file" in capsys.readouterr().err
    assert len(served) == 1


def test_read_timeouts_and_cors_come_from_flags(served, tmp_path: Path, capsys: pytest.CaptureFixture):
    folder = save_model(tmp_path / "tiny-http", EqRNetwork(TINY))
    flags = ["--header-timeout", "2.5", "--body-timeout", "7", "--cors-origins", "https://app.example"]
    assert main(["serve", "--model", str(folder), *flags]) == 0
    (s,) = served
    assert (s.header_timeout_s, s.body_timeout_s, s.cors_origin_list) == (2.5, 7.0, ["https://app.example"])
    assert main(["serve", "--model", str(folder), "--body-timeout", "0"]) == 2
    assert "body_timeout_s" in capsys.readouterr().err
    assert main(["serve", "--model", str(folder), "--cors-origins", "app.example"]) == 2
    assert "scheme://host" in capsys.readouterr().err
