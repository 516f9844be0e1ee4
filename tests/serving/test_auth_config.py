"""Unit tests of API-key checks, configuration from the environment and gunicorn options."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from mlrollout.serving.auth import ApiKeys, AuthConfigError
from mlrollout.serving.config import ConfigError, ServingConfig
from mlrollout.serving.errors import Forbidden, Unauthorized
from mlrollout.serving.gunicorn_config import gunicorn_options


def test_keys_from_file_and_env(tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text("alpha\n\n# comment\nbeta\n")
    keys = ApiKeys.from_sources(str(file), "gamma, alpha")
    assert keys.keys == (b"alpha", b"beta", b"gamma")
    keys.check({"Authorization": "Bearer beta"})
    keys.check({"X-API-Key": "gamma"})
    with pytest.raises(Unauthorized, match="missing API key"):
        keys.check({})
    with pytest.raises(Forbidden, match="not valid"):
        keys.check({"Authorization": "Bearer nope"})
    with pytest.raises(Forbidden):
        keys.check({"Authorization": "Basic YWxwaGE="})


def test_no_keys_means_open_and_bad_sources_fail(tmp_path: Path) -> None:
    ApiKeys.from_sources(None, None).check({})
    with pytest.raises(AuthConfigError, match="cannot read API key file"):
        ApiKeys.from_sources(str(tmp_path / "absent"), None)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AuthConfigError, match="none were found"):
        ApiKeys.from_sources(str(tmp_path / "empty"), None)


def test_config_from_env_and_errors_name_the_variable() -> None:
    config = ServingConfig.from_env(
        {
            "MLROLLOUT_MODEL_URI": "models:/m/3",
            "MLROLLOUT_TRACK": "canary",
            "MLROLLOUT_MAX_ROWS": "50",
            "MLROLLOUT_MICROBATCH": "false",
        }
    )
    assert (config.model_uri, config.track, config.limits.max_rows, config.microbatch) == (
        "models:/m/3",
        "canary",
        50,
        False,
    )
    with pytest.raises(ConfigError, match="MLROLLOUT_MAX_ROWS='x' is not an integer"):
        ServingConfig.from_env({"MLROLLOUT_MAX_ROWS": "x"})
    with pytest.raises(ConfigError, match=r"MICROBATCH='maybe' is not a boolean \(true/false\) or auto"):
        ServingConfig.from_env({"MLROLLOUT_MICROBATCH": "maybe"})
    values = ("auto", "", "on", "0")
    microbatch = {v: ServingConfig.from_env({"MLROLLOUT_MICROBATCH": v}).microbatch for v in values}
    assert microbatch == {"auto": None, "": None, "on": True, "0": False}
    assert ServingConfig.from_env({}).microbatch is None  # auto by default


def test_gunicorn_options() -> None:
    options = gunicorn_options(
        {"MLROLLOUT_PORT": "9000", "MLROLLOUT_WORKERS": "3", "MLROLLOUT_GRACEFUL_TIMEOUT": "7"}
    )
    assert options["bind"] == ["0.0.0.0:9000"]
    assert (options["workers"], options["graceful_timeout"], options["preload_app"]) == (3, 7, True)
    assert options["worker_class"] == "gthread"
    with pytest.raises(ConfigError, match="MLROLLOUT_WORKERS=0 must be >= 1"):
        gunicorn_options({"MLROLLOUT_WORKERS": "0"})


def test_the_master_freezes_what_it_holds_before_each_fork() -> None:
    """Workers then never walk the preloaded model's objects in a full collection (nor dirty them)."""
    pre_fork = gunicorn_options({})["pre_fork"]
    gc.unfreeze()
    try:
        pre_fork(None, None)
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
