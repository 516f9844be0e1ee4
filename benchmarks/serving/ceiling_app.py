"""The ceiling: no model at all, under exactly the gunicorn settings mlrollout-serve uses
(serving/gunicorn_config.py, from the same environment variables), so what is left is gunicorn's
gthread worker, HTTP parsing and the client. mlrollout's req/s against this says what its own
request path (validation, model, metrics, logging) costs.

Run: MLROLLOUT_BIND=127.0.0.1:PORT .venv/bin/python -P benchmarks/serving/ceiling_app.py"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from mlrollout.serving.cli import _Application
from mlrollout.serving.gunicorn_config import gunicorn_options, prepare_multiprocess_dir

ANSWER = b'{"predictions": [0]}'


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Reads the whole body (as a server must) and answers a fixed prediction; /ping is 'ok'."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    body = ANSWER if environ.get("PATH_INFO") == "/invocations" else b"ok"
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Ceiling(_Application):  # type: ignore[misc]
    """mlrollout-serve's own gunicorn application (the same option loading), serving `app`."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(None, None, options)

    def load(self) -> Any:
        return app


if __name__ == "__main__":
    prepare_multiprocess_dir(os.environ)  # the post_fork/child_exit hooks expect it, as in a pod
    Ceiling(gunicorn_options(os.environ)).run()
