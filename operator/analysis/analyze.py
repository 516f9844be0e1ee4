"""One analysis run: query Prometheus (the only I/O), then the pure steps: derive, measure, judge."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from .judge import AnalysisOutcome, judge
from .measurement import measure
from .prometheus import PrometheusClient, PrometheusError
from .promql import CANARY, DEFAULT_SERIES, STABLE, AnalysisTarget, Quantity, SeriesNames, build_queries
from .readings import QueryFailure, QueryResult, Results, derive
from .spec import AnalysisSpec
from .state import AnalysisState


async def collect(client: PrometheusClient, queries: Mapping[Quantity, str]) -> dict[Quantity, QueryResult]:
    """Run the queries concurrently; a failed query becomes a QueryFailure carrying the reason."""

    async def one(promql: str) -> QueryResult:
        try:
            return await client.query(promql)
        except PrometheusError as exc:
            return QueryFailure(str(exc))

    answers = await asyncio.gather(*(one(q) for q in queries.values()))
    return dict(zip(queries, answers, strict=True))


def evaluate(
    spec: AnalysisSpec,
    results: Results,
    state: AnalysisState,
    now: datetime,
    *,
    names: SeriesNames = DEFAULT_SERIES,
) -> AnalysisOutcome:
    """Pure: query results -> measurements -> outcome with the next state."""
    measurements = []
    for metric in spec.metrics:
        readings = derive(
            metric.kind,
            results,
            names,
            client_errors=metric.client_errors,
            client_error_margin=metric.client_error_margin,
        )
        measurements.append(measure(metric, readings[CANARY], readings[STABLE], spec.min_samples_for(metric)))
    return judge(spec, measurements, state, now)


async def analyze(
    client: PrometheusClient,
    spec: AnalysisSpec,
    target: AnalysisTarget,
    state: AnalysisState,
    *,
    now: datetime,
    names: SeriesNames = DEFAULT_SERIES,
) -> AnalysisOutcome:
    """Query canary and stable over spec.window and judge them. Never raises for Prometheus trouble:
    unreachable, timeouts and query errors come back as an Inconclusive outcome with the reason."""
    queries = build_queries(target, (m.kind for m in spec.metrics), spec.window_seconds, names)
    results = await collect(client, queries)
    return evaluate(spec, results, state, now, names=names)
