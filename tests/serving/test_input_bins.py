"""Training profiles and live input bins: the profile a user logs with one `metadata=` argument, read
back by serving from the MLmodel file, and the scored rows counted in its bins exactly as numpy's
searchsorted and a category lookup would, with bounded series and nothing counted for refused input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlrollout.serving.app import create_app
from mlrollout.serving.auth import ApiKeys
from mlrollout.serving.config import ServingConfig
from mlrollout.serving.input_bins import BINS, PROFILED, REFERENCE, InputBins
from mlrollout.serving.loading import load_model
from mlrollout.serving.model import LoadedModel
from mlrollout.serving.parsing import Batch
from mlrollout.serving.profile import (
    MISSING,
    OTHER,
    PROFILE_KEY,
    ProfileError,
    parse_profile,
    training_profile,
)
from mlrollout.serving.schema import Column, InputSchema
from prometheus_client import CollectorRegistry
from support.mlflow_models import CATEGORICAL_FRAME_COLUMNS, CATEGORIES, churn_frame, save_categorical_model

IDENT = {"model": "churn", "model_version": "3", "track": "canary"}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = tmp_path_factory.mktemp("profiled") / "ridge"
    save_categorical_model(str(path), "ridge", profile=True)
    return load_model(str(path), name="churn", version="3")


def test_the_profile_describes_the_training_frame() -> None:
    frame, _, value = churn_frame(600, seed=0)
    profile = parse_profile(training_profile(frame, value, bins=5))
    tenure = profile.feature("tenure_months")
    assert tenure is not None
    assert tenure.kind == "numeric"
    assert len(tenure.edges) == 4
    assert tenure.labels == ("0", "1", "2", "3", "4", MISSING)
    assert tenure.reference == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.2, 0.0], abs=0.01)
    plan = profile.feature("plan")
    assert plan is not None
    assert set(plan.categories) == set(CATEGORIES["plan"])
    assert plan.labels[-2:] == (OTHER, MISSING)
    assert sum(plan.reference) == pytest.approx(1.0)
    assert profile.rows == 600
    assert set(profile.target) == {"q01", "q25", "q50", "q75", "q99"}  # a numeric target: quantiles


def test_missing_values_and_rare_categories_have_their_own_bins() -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "a", "b", None]})
    profile = parse_profile(training_profile(frame, bins=2, top_categories=1))
    x, c = profile.features
    assert x.reference[-1] == pytest.approx(0.25)  # one of four is missing
    assert c.categories == ("a",)
    assert c.reference == pytest.approx([0.5, 0.25, 0.25])  # a, other (b), missing


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"format": 2}, "expected an object with format 1"),
        ({"format": 1, "features": []}, "features: expected a list"),
        (
            {
                "format": 1,
                "features": [{"name": "x", "type": "numeric", "edges": [2, 1], "reference": [1, 0, 0]}],
            },
            "features[0].edges: at most 19 strictly ascending",
        ),
        (
            {
                "format": 1,
                "features": [{"name": "x", "type": "numeric", "edges": [1], "reference": [0.5, 0.2, 0]}],
            },
            "features[0].reference: one share per bin (3), summing to 1",
        ),
        ({"format": 1, "features": [{"name": "x", "type": "text"}]}, "features[0].type: expected numeric"),
    ],
)
def test_a_bad_profile_names_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_profile(raw)
    assert message in str(err.value)


def test_rows_are_counted_in_the_profiles_bins(profiled: LoadedModel) -> None:
    assert profiled.profile is not None
    registry = CollectorRegistry()
    bins = InputBins(profiled.profile, profiled.schema, IDENT, registry, flush_seconds=None)
    frame, _, _ = churn_frame(500, seed=9)
    frame.loc[:9, "tenure_months"] = np.nan  # missing values
    frame.loc[10:19, "plan"] = "enterprise"  # a category training never saw
    values = frame[CATEGORICAL_FRAME_COLUMNS].to_numpy(dtype=object)
    values[:10, CATEGORICAL_FRAME_COLUMNS.index("tenure_months")] = np.nan
    bins.observe(Batch(values[:200]), profiled.schema)
    bins.observe(Batch(values[200:]), profiled.schema)
    bins.flush()

    def count(feature: str, label: str) -> float:
        value = registry.get_sample_value(f"{BINS}_total", {**IDENT, "feature": feature, "bin": label})
        return value or 0.0

    tenure = profiled.profile.feature("tenure_months")
    assert tenure is not None
    present = frame["tenure_months"].dropna().to_numpy()
    expected = np.bincount(np.searchsorted(np.asarray(tenure.edges), present, side="right"), minlength=10)
    assert [count("tenure_months", str(i)) for i in range(10)] == expected.tolist()
    assert count("tenure_months", MISSING) == 10
    assert count("plan", OTHER) == 10
    assert sum(count("plan", p) for p in CATEGORIES["plan"]) == 490
    # The reference shares sit next to the counts, one per bin.
    reference = [
        registry.get_sample_value(REFERENCE, {**IDENT, "feature": "tenure_months", "bin": label})
        for label in tenure.labels
    ]
    assert reference == pytest.approx(list(tenure.reference))
    assert registry.get_sample_value(PROFILED, IDENT) == 5


def metrics_text(model: LoadedModel, requests: list[dict[str, Any]]) -> str:
    app = create_app(model, ServingConfig(), ApiKeys(), CollectorRegistry())
    c = app.test_client()
    for body in requests:
        c.post("/invocations", json=body)
    state = app.extensions["mlrollout"]
    bins = state.service._input_bins
    if bins is not None:
        bins.flush()
    return str(c.get("/metrics").get_data(as_text=True))


def test_served_requests_fill_the_bins_and_refused_ones_do_not(profiled: LoadedModel) -> None:
    frame, _, _ = churn_frame(3, seed=4)
    good = {"dataframe_records": frame.to_dict(orient="records")}
    bad = {"dataframe_records": [{**frame.to_dict(orient="records")[0], "plan": 7}]}  # wrong type: 422
    text = metrics_text(profiled, [good, good, bad])
    lines = [
        line for line in text.splitlines() if line.startswith(f"{BINS}_total{{") and 'feature="plan"' in line
    ]
    assert (
        sum(float(line.rsplit(" ", 1)[1]) for line in lines) == 6
    )  # 2 requests x 3 rows, not the refused one
    assert f'{PROFILED}{{model="churn",model_version="3",track="stable"}} 5.0' in text


def test_a_version_without_profile_says_so(tmp_path: Path) -> None:
    save_categorical_model(str(tmp_path / "m"), "ridge")
    model = load_model(str(tmp_path / "m"), name="churn", version="4")
    assert model.profile is None
    frame, _, _ = churn_frame(2, seed=4)
    text = metrics_text(model, [{"dataframe_records": frame.to_dict(orient="records")}])
    assert f'{PROFILED}{{model="churn",model_version="4",track="stable"}} 0.0' in text
    assert f"{BINS}_total{{" not in text


def test_a_broken_profile_never_stops_serving(tmp_path: Path) -> None:
    import yaml

    save_categorical_model(str(tmp_path / "m"), "ridge", profile=True)
    mlmodel = tmp_path / "m" / "MLmodel"
    doc = yaml.safe_load(mlmodel.read_text())
    doc["metadata"][PROFILE_KEY]["features"][0]["reference"] = [1.0]
    mlmodel.write_text(yaml.safe_dump(doc))
    model = load_model(str(tmp_path / "m"), name="churn", version="5")
    assert model.profile is None  # logged as a warning; the version serves without input bins


def test_a_numeric_only_schema_bins_the_float_matrix() -> None:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.uniform(size=1000)})
    profile = parse_profile(training_profile(frame, bins=4))
    schema = InputSchema((Column("a", "double"), Column("b", "double")))
    registry = CollectorRegistry()
    bins = InputBins(profile, schema, IDENT, registry, flush_seconds=None)
    bins.observe(Batch(np.array([[-10.0, 0.4], [10.0, np.nan]])), schema)
    bins.flush()
    got = {
        (f, b): registry.get_sample_value(f"{BINS}_total", {**IDENT, "feature": f, "bin": b})
        for f, b in (("a", "0"), ("a", "3"), ("b", "1"), ("b", MISSING))
    }
    assert got == {("a", "0"): 1.0, ("a", "3"): 1.0, ("b", "1"): 1.0, ("b", MISSING): 1.0}


def test_one_row_requests_count_as_a_large_batch_does(profiled: LoadedModel) -> None:
    """Small batches take a pure-Python path (bisect, dict lookups), large ones numpy: same cells."""
    assert profiled.profile is not None
    frame, _, _ = churn_frame(300, seed=11)
    frame.loc[:4, "monthly_charges"] = np.nan
    frame.loc[5:9, "region"] = None
    frame.loc[10:14, "region"] = "mars"
    values = frame[CATEGORICAL_FRAME_COLUMNS].to_numpy(dtype=object)
    values[:5, CATEGORICAL_FRAME_COLUMNS.index("monthly_charges")] = np.nan

    def counted(batches: list[Any]) -> dict[tuple[str, str], float]:
        registry = CollectorRegistry()
        bins = InputBins(profiled.profile, profiled.schema, IDENT, registry, flush_seconds=None)  # type: ignore[arg-type]
        for b in batches:
            bins.observe(Batch(b), profiled.schema)
        bins.flush()
        return {
            (s.labels["feature"], s.labels["bin"]): s.value
            for metric in registry.collect()
            if metric.name == BINS
            for s in metric.samples
            if s.name.endswith("_total")
        }

    one_by_one = counted([values[i : i + 1] for i in range(len(values))])
    at_once = counted([values])
    assert one_by_one == at_once
    assert at_once[("monthly_charges", MISSING)] == 5
    assert at_once[("region", MISSING)] == 5
    assert at_once[("region", OTHER)] == 5
    assert sum(v for (f, _), v in at_once.items() if f == "plan") == 300
