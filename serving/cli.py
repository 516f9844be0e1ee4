"""`mlrollout-serve`: load the model named by MLROLLOUT_MODEL_URI and serve it under gunicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlrollout-serve", description=__doc__)
    parser.add_argument("--model-uri", help="overrides MLROLLOUT_MODEL_URI")
    parser.add_argument("--bind", help="host:port, overrides MLROLLOUT_BIND/MLROLLOUT_HOST/MLROLLOUT_PORT")
    parser.add_argument("--workers", type=int, help="overrides MLROLLOUT_WORKERS")
    args = parser.parse_args(argv)
    if args.model_uri:
        os.environ["MLROLLOUT_MODEL_URI"] = args.model_uri
    if args.bind:
        os.environ["MLROLLOUT_BIND"] = args.bind
    if args.workers:
        os.environ["MLROLLOUT_WORKERS"] = str(args.workers)
    from mlrollout.serving import logs

    try:
        flush_seconds = logs.flush_interval(os.environ.get("MLROLLOUT_ACCESS_LOG_FLUSH_SECONDS"))
    except ValueError as exc:
        print(f"mlrollout-serve: {exc}", file=sys.stderr)
        return 2
    logs.configure(os.environ.get("MLROLLOUT_LOG_LEVEL", "INFO"), access_flush_seconds=flush_seconds)

    # prometheus_client decides single- or multi-process mode at import: set the dir first.
    from mlrollout.serving.gunicorn_config import gunicorn_options, prepare_multiprocess_dir

    prepare_multiprocess_dir(os.environ)
    from mlrollout.serving.auth import ApiKeys, AuthConfigError
    from mlrollout.serving.config import ConfigError, ServingConfig
    from mlrollout.serving.loading import ModelLoadError

    try:
        config = ServingConfig.from_env()
        options = gunicorn_options(os.environ)
        keys = ApiKeys.from_sources(config.api_keys_file, config.api_keys)
    except (ConfigError, AuthConfigError) as exc:
        print(f"mlrollout-serve: {exc}", file=sys.stderr)
        return 2
    if not config.model_uri:
        print(
            "mlrollout-serve: set MLROLLOUT_MODEL_URI (or --model-uri) to the pinned model", file=sys.stderr
        )
        return 2
    if not keys.enabled:
        logging.getLogger("mlrollout.serving").warning(
            "no API keys configured (MLROLLOUT_API_KEYS_FILE / MLROLLOUT_API_KEYS): scoring is open"
        )
    application = _Application(config, keys, options)
    try:
        application.run()
    except ModelLoadError as exc:
        print(f"mlrollout-serve: {exc}", file=sys.stderr)
        return 3
    return 0


def _application_base() -> Any:
    from gunicorn.app.base import BaseApplication

    return BaseApplication


class _Application(_application_base()):  # type: ignore[misc]
    def __init__(self, config: Any, keys: Any, options: dict[str, Any]) -> None:
        self._config = config
        self._keys = keys
        self._options = options
        self.loaded_app: Any = None
        self.shadow_relay: Any = None  # the relay process' supervisor, when shadow mode is configured
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            # Settings newer than the installed gunicorn (e.g. control_socket_disable) are skipped.
            if value is not None and key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from mlrollout.serving.app import create_app
        from mlrollout.serving.loading import load_model

        if self.loaded_app is None:
            started = time.monotonic()
            config = self._config
            model = load_model(
                config.model_uri,
                name=config.model_name,
                version=config.model_version,
                extra_trusted=config.skops_trusted_types,
                allow_pickle=config.allow_pickle,
                fastpath=config.fastpath,
            )
            if config.shadow_config and self.cfg.preload_app:
                config = self._start_shadow_relay(config, model)
            self.loaded_app = create_app(model, config, self._keys)
            logging.getLogger("mlrollout.serving").info(
                "serving %s version %s (%s, %d columns) loaded in %.2fs",
                model.name,
                model.version,
                model.flavor,
                model.schema.width,
                time.monotonic() - started,
            )
        return self.loaded_app

    def _start_shadow_relay(self, config: Any, model: Any) -> Any:
        """Workers hand shadow copies to one low-priority relay process (shadow_relay.py). Only with
        preload: then this runs once, in the master; without it every worker sends its own."""
        from dataclasses import replace

        from mlrollout.serving.shadow_relay import RelaySupervisor, relay_argv

        # An abstract socket: no file on a read-only root, and the pod's network namespace scopes it.
        address = f"@mlrollout-shadow-relay-{os.getpid()}"
        self.shadow_relay = RelaySupervisor(
            relay_argv(address, model.name, model.version, config.track, model.schema.names)
        )
        self.shadow_relay.start()
        return replace(config, shadow_relay=address)


if __name__ == "__main__":
    raise SystemExit(main())
