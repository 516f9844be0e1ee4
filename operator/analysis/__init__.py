"""Canary analysis: judge a canary against the stable track on live metrics from Prometheus.

Pure core (spec, promql, readings, measurement, judge, state, signals) plus two thin layers:
the Prometheus client and `analyze`, which runs one analysis. `AnalysisRunner.tick` asks
`next_analysis` whether a run is due and calls `analyze`; its result is an observation for the
planner, which records it in status.lastAnalysis and acts on its `action` (see README.md).
"""

from .analyze import analyze, collect, evaluate
from .judge import Action, AnalysisOutcome, combine, judge
from .measurement import Measurement, Reading, Verdict, measure
from .prometheus import PrometheusClient, PrometheusError
from .promql import AnalysisTarget, Quantity, SeriesNames, build_queries
from .readings import QueryFailure, Sample, derive
from .runner import AnalysisRunner, Tick
from .schedule import Due, NotDue, next_analysis
from .signals import macro_f1, psi
from .spec import (
    AnalysisSpec,
    AnalysisSpecError,
    ClientErrors,
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
    "AnalysisRunner",
    "AnalysisSpec",
    "AnalysisSpecError",
    "AnalysisState",
    "AnalysisTarget",
    "ClientErrors",
    "Direction",
    "Due",
    "InconclusivePolicy",
    "Measurement",
    "MetricKind",
    "MetricSpec",
    "NotDue",
    "PrometheusClient",
    "PrometheusError",
    "Quantity",
    "QueryFailure",
    "Reading",
    "Sample",
    "SeriesNames",
    "Tick",
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
    "next_analysis",
    "parse_duration",
    "psi",
]
