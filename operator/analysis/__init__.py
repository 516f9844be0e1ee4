"""Canary analysis: judge a canary against the stable track on live metrics from Prometheus.

Pure core (spec, promql, readings, measurement, judge, state, signals) plus two thin layers:
the Prometheus client and `analyze`, which runs one analysis. The planner calls `analyze` (or
`evaluate` with query results it already has) and acts on `AnalysisOutcome.action`.
"""

from .analyze import analyze, collect, evaluate
from .judge import Action, AnalysisOutcome, combine, judge
from .measurement import Measurement, Reading, Verdict, measure
from .prometheus import PrometheusClient, PrometheusError
from .promql import AnalysisTarget, Quantity, SeriesNames, build_queries
from .readings import QueryFailure, Sample, derive
from .signals import macro_f1, psi
from .spec import (
    AnalysisSpec,
    AnalysisSpecError,
    Direction,
    InconclusivePolicy,
    MetricKind,
    MetricSpec,
    parse_duration,
)
from .state import AnalysisState

__all__ = [
    "Action",
    "AnalysisOutcome",
    "AnalysisSpec",
    "AnalysisSpecError",
    "AnalysisState",
    "AnalysisTarget",
    "Direction",
    "InconclusivePolicy",
    "Measurement",
    "MetricKind",
    "MetricSpec",
    "PrometheusClient",
    "PrometheusError",
    "Quantity",
    "QueryFailure",
    "Reading",
    "Sample",
    "SeriesNames",
    "Verdict",
    "analyze",
    "build_queries",
    "collect",
    "combine",
    "derive",
    "evaluate",
    "judge",
    "macro_f1",
    "measure",
    "parse_duration",
    "psi",
]
