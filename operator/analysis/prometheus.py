"""A thin async client for Prometheus' instant-query API (GET/POST /api/v1/query).

Every way a query can go wrong (connection refused, timeout, HTTP error, Prometheus error payload,
malformed JSON) becomes a PrometheusError whose message is the reason shown in status, so the
caller turns it into an Inconclusive measurement instead of a pass or a fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp

from .readings import Sample


class PrometheusError(Exception):
    """A query that produced no usable answer; str(error) is the reason."""


class PrometheusClient:
    def __init__(
        self,
        address: str,
        *,
        timeout_seconds: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not address.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus address must be an http(s) URL, got {address!r}")
        if timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        self.address = address.rstrip("/")
        self.timeout_seconds = timeout_seconds
        # A shared session (one per operator process) keeps connections pooled across ModelDeployments.
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def query(self, promql: str) -> list[Sample]:
        """Evaluate `promql` at the server's current time; a vector or scalar result as samples."""
        url = f"{self.address}/api/v1/query"
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        # Prometheus cuts the evaluation itself slightly before we give up on the HTTP call.
        # Prometheus durations take whole units only ("4500ms", not "4.5s").
        form = {"query": promql, "timeout": f"{max(100, round(self.timeout_seconds * 900))}ms"}
        try:
            async with self._get_session().post(url, data=form, timeout=timeout) as resp:
                text = await resp.text(errors="replace")
                status = resp.status
        except TimeoutError:
            raise PrometheusError(
                f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"Prometheus at {self.address} unreachable: {exc}") from None
        return parse_response(status, text, self.address)


def parse_response(status: int, text: str, address: str = "Prometheus") -> list[Sample]:
    """The samples of an /api/v1/query answer, or PrometheusError with Prometheus' own message."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        snippet = text[:200].strip()
        raise PrometheusError(f"{address} answered HTTP {status} with non-JSON body: {snippet!r}") from None
    if not isinstance(body, Mapping):
        raise PrometheusError(f"{address} answered HTTP {status} with unexpected JSON")
    if body.get("status") != "success":
        raise PrometheusError(
            f"query error from {address} (HTTP {status}, {body.get('errorType', 'unknown')}): "
            f"{body.get('error', 'no message')}"
        )
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise PrometheusError(f"{address} answered without data")
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector" and isinstance(result, list):
            return [Sample(labels=dict(item["metric"]), value=_value(item["value"])) for item in result]
        if kind == "scalar" and isinstance(result, list):
            return [Sample(labels={}, value=_value(result))]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PrometheusError(f"{address} answered a malformed {kind} result: {exc}") from None
    raise PrometheusError(f"{address} answered result type {kind!r}; analysis queries need an instant vector")


def _value(pair: Any) -> float:
    # [timestamp, "value"]; Prometheus spells non-finite values "NaN", "+Inf", "-Inf", which float() reads.
    return float(pair[1])
