"""Server settings: EQR_* environment variables, ``eqr serve`` flags over them, early failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from eqr.model.bundled import BUNDLED_MODELS
from eqr.model.checkpoint import save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.server import flags
from eqr.server.cli import main
from eqr.server.engine.interface import EngineConfig
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
    assert (s.host, s.port, s.model) == ("127.0.0.1", 8000, list(BUNDLED_MODELS))
    assert s.served_names == ["sudoku-small", "maze-small"]  # both bundled models, Sudoku the default
    assert s.threads is None and s.slots is None  # torch's threads, and the slots that fill the device
    # the caps an engine gets by default are the server's: embedded use and eqr serve cannot drift apart
    engine = EngineConfig()
    assert (s.max_depth, s.max_breadth, s.max_queue) == (engine.max_depth, engine.max_breadth, engine.max_queue)


def test_every_setting_is_a_flag_with_its_default_in_the_help(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in Settings.model_fields:
        if name in flags.ENV_ONLY:
            assert f"{flags.flag_name(name)} " not in text  # a secret never goes on a command line
            continue
        assert f"{flags.flag_name(name)} " in text and f"$EQR_{name.upper()}" in text, name
    assert "--job-ttl JOB_TTL_S how long a finished async job stays readable (default 600.0, $EQR_JOB_TTL_S)" in text


@pytest.mark.parametrize(
    ("command", "present", "absent"), [("api", "--port", "--slots"), ("worker", "--slots", "--port")]
)
def test_each_command_takes_the_settings_it_uses(capsys, command, present, absent):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert present in out and absent not in out and "--drain-timeout" in out


def test_flags_override_environment_variables(served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = save_model(tmp_path / "tiny-cli", EqRNetwork(TINY))
    for name, value in {"MODEL": str(folder), "PORT": "9001", "SLOTS": "12", "JOB_TTL_S": "5"}.items():
        monkeypatch.setenv(f"EQR_{name}", value)
    assert main(["serve", "--port", "9100", "--max-depth", "32", "--threads", "1"]) == 0
    (s,) = served
    assert (s.port, s.slots, s.max_depth, s.threads, s.job_ttl_s) == (9100, 12, 32, 1, 5.0)
    assert s.model == [folder] and s.served_names == ["tiny-cli"]


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


def test_a_default_model_that_is_not_served_fails_before_serving(served, tmp_path: Path, capsys):
    folder = save_model(tmp_path / "only", EqRNetwork(TINY))
    assert main(["serve", "--model", str(folder), "--default-model", "other"]) == 2
    err = capsys.readouterr().err
    assert err == "eqr serve: --default-model 'other' is not served here ('only')\n" and served == []


def test_several_models_by_flag_or_environment(served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    a, b = (save_model(tmp_path / name, EqRNetwork(TINY)) for name in ("first", "second"))
    assert main(["serve", "--model", str(a), "--model", str(b), "--model-name", "one"]) == 0
    assert served[-1].model == [a, b] and served[-1].served_names == ["one", "second"]
    # one flag may list several, separated by commas, as its help says (and as EQR_MODEL does)
    assert main(["serve", "--model", f"{a},{b}", "--model-name", "one,two"]) == 0
    assert served[-1].model == [a, b] and served[-1].served_names == ["one", "two"]
    assert main(["serve", "--model", f"{a}, {b}", "--model", str(tmp_path / "third")]) == 2  # each folder checked
    # the default model: the first folder's, unless --default-model names another served one
    assert served[-1].default_model_name == "one"
    assert main(["serve", "--model", f"{a},{b}", "--default-model", "second"]) == 0
    assert served[-1].default_model_name == "second"
    monkeypatch.setenv("EQR_MODEL", f"{a}, {b}")
    assert Settings().model == [a, b]
    with pytest.raises(ValueError, match="both named 'first'"):
        Settings(model=[a, a])
    with pytest.raises(ValueError, match="2 model names for 1 model folder"):
        Settings(model=a, model_name="x,y")
