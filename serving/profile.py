"""Training profiles: per-feature reference distributions logged with a model version, so serving can
count live inputs in the same bins and the operator can measure input drift against training.

At training time, one argument to `log_model`:

    mlflow.sklearn.log_model(model, name="model", signature=..., metadata=mlrollout_profile(x_train, y_train))

The profile lands in the version's MLmodel file (`metadata.mlrollout_profile`), so it travels with the
model, needs no extra download and cannot drift apart from the version it describes. It holds no raw
rows: numeric features keep quantile cut points, categorical ones their most frequent categories (the
values themselves, so keep personal data out of categorical columns you profile, or pass `features=`).

Bins, for each feature (the same order everywhere: reference shares, serving's counters, analysis):
numeric: the k quantile bins between the cut points, then `missing`; categorical: the top categories,
then `other`, then `missing`. Bin labels are strings: "0".."k-1" for numeric bins, the category text
for categories, and the two reserved labels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PROFILE_KEY = "mlrollout_profile"
FORMAT = 1
MISSING = "__missing__"
OTHER = "__other__"
MAX_BINS = 20  # numeric bins per feature: bounded series per feature
MAX_CATEGORIES = 20
MAX_FEATURES = 200
MAX_LABEL_CHARS = 64


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the feature and the problem."""


@dataclass(frozen=True)
class FeatureProfile:
    name: str
    kind: Literal["numeric", "categorical"]
    # numeric: interior cut points, ascending (k-1 of them for k bins); categorical: the categories.
    edges: tuple[float, ...]
    categories: tuple[str, ...]
    reference: tuple[float, ...]  # share of training rows per bin (labels order), sums to 1

    @property
    def labels(self) -> tuple[str, ...]:
        if self.kind == "numeric":
            return (*(str(i) for i in range(len(self.edges) + 1)), MISSING)
        return (*self.categories, OTHER, MISSING)


@dataclass(frozen=True)
class Profile:
    features: tuple[FeatureProfile, ...]
    rows: int
    target: Mapping[str, float]  # class shares (classifier) or target quantiles (regressor); informative

    def feature(self, name: str) -> FeatureProfile | None:
        return next((f for f in self.features if f.name == name), None)


# --------------------------------------------------------------------------- building (training time)
def training_profile(
    frame: Any,
    target: Any = None,
    *,
    bins: int = 10,
    top_categories: int = 10,
    features: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The JSON-ready profile of a training frame (a pandas DataFrame; a 2-D array gets columns
    "0", "1", ...). Numeric columns: `bins` quantile bins; other columns: the `top_categories` most
    frequent values (as text) and `other`; every feature: its missing share."""
    import numpy as np
    import pandas as pd

    if not 2 <= bins <= MAX_BINS:
        raise ProfileError(f"bins must be in [2, {MAX_BINS}], got {bins}")
    if not 1 <= top_categories <= MAX_CATEGORIES:
        raise ProfileError(f"top_categories must be in [1, {MAX_CATEGORIES}], got {top_categories}")
    df = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(np.asarray(frame))
    df.columns = [str(c) for c in df.columns]
    names = list(df.columns) if features is None else [str(f) for f in features]
    if not names or len(names) > MAX_FEATURES:
        raise ProfileError(f"a profile covers 1 to {MAX_FEATURES} features, got {len(names)}")
    rows = len(df)
    if rows == 0:
        raise ProfileError("the training frame has no rows")
    out: list[dict[str, Any]] = []
    for name in names:
        if name not in df.columns:
            raise ProfileError(f"feature {name!r} is not a column of the frame")
        column = df[name]
        missing = column.isna()
        present = column[~missing]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = present.to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            quantiles = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]) if values.size else []
            edges = [float(c) for c in np.unique(quantiles)]
            counts = np.bincount(
                np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1
            )
            shares = [float(c) / rows for c in counts] + [float(missing.sum()) / rows]
            out.append({"name": name, "type": "numeric", "edges": edges, "reference": shares})
        else:
            text = present.map(_label)
            frequent = text.value_counts()
            categories = [str(c) for c in frequent.index[:top_categories]]
            shares = [float(frequent[c]) / rows for c in categories]
            other = float(len(text) - sum(frequent[c] for c in categories)) / rows
            out.append(
                {
                    "name": name,
                    "type": "categorical",
                    "categories": categories,
                    "reference": [*shares, other, float(missing.sum()) / rows],
                }
            )
    return {"format": FORMAT, "rows": rows, "features": out, "target": _target_summary(target)}


def mlrollout_profile(frame: Any, target: Any = None, **options: Any) -> dict[str, Any]:
    """`metadata=` for MLflow's log_model/save_model: {"mlrollout_profile": training_profile(...)}."""
    return {PROFILE_KEY: training_profile(frame, target, **options)}


def _target_summary(target: Any) -> dict[str, float]:
    if target is None:
        return {}
    import numpy as np
    import pandas as pd

    series = pd.Series(np.asarray(target).ravel())
    if pd.api.types.is_float_dtype(series) and series.nunique() > MAX_CATEGORIES:
        qs = series.quantile([0.01, 0.25, 0.5, 0.75, 0.99])
        return {f"q{round(q * 100):02d}": float(v) for q, v in qs.items()}
    counts = series.map(_label).value_counts(normalize=True)
    return {str(k): float(v) for k, v in list(counts.items())[:MAX_CATEGORIES]}


def _label(value: Any) -> str:
    text = value if isinstance(value, str) else str(value.item() if hasattr(value, "item") else value)
    return text[:MAX_LABEL_CHARS]


# --------------------------------------------------------------------------- reading (serving time)
def profile_of(mlmodel: Mapping[str, Any]) -> Profile | None:
    """The profile in an MLmodel document's metadata, validated; None when none was logged."""
    metadata = mlmodel.get("metadata") or {}
    raw = metadata.get(PROFILE_KEY) if isinstance(metadata, Mapping) else None
    return None if raw is None else parse_profile(raw)


def parse_profile(raw: Any) -> Profile:
    if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
        raise ProfileError(f"{PROFILE_KEY}: expected an object with format {FORMAT}")
    features = raw.get("features")
    if not isinstance(features, Sequence) or not 1 <= len(features) <= MAX_FEATURES:
        raise ProfileError(f"{PROFILE_KEY}.features: expected a list of 1 to {MAX_FEATURES} features")
    parsed = tuple(_feature(f, i) for i, f in enumerate(features))
    names = [f.name for f in parsed]
    if len(set(names)) != len(names):
        raise ProfileError(f"{PROFILE_KEY}.features: a feature is listed twice")
    target = raw.get("target") or {}
    return Profile(
        features=parsed,
        rows=int(raw.get("rows") or 0),
        target={str(k): float(v) for k, v in target.items()} if isinstance(target, Mapping) else {},
    )


def _feature(raw: Any, index: int) -> FeatureProfile:
    where = f"{PROFILE_KEY}.features[{index}]"
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ProfileError(f"{where}: expected an object with a name")
    name, kind = raw["name"], raw.get("type")
    if kind not in ("numeric", "categorical"):
        raise ProfileError(f"{where}.type: expected numeric or categorical, got {kind!r}")
    reference = _numbers(raw.get("reference"), f"{where}.reference")
    if kind == "numeric":
        edges = _numbers(raw.get("edges"), f"{where}.edges")
        if len(edges) > MAX_BINS - 1 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ProfileError(f"{where}.edges: at most {MAX_BINS - 1} strictly ascending cut points")
        feature = FeatureProfile(name, "numeric", edges, (), reference)
    else:
        categories = raw.get("categories")
        if not isinstance(categories, Sequence) or len(categories) > MAX_CATEGORIES:
            raise ProfileError(f"{where}.categories: at most {MAX_CATEGORIES} categories")
        texts = tuple(str(c)[:MAX_LABEL_CHARS] for c in categories)
        if len(set(texts)) != len(texts) or {MISSING, OTHER} & set(texts):
            raise ProfileError(f"{where}.categories: duplicate or reserved category")
        feature = FeatureProfile(name, "categorical", (), texts, reference)
    if len(reference) != len(feature.labels) or not math.isclose(sum(reference), 1.0, abs_tol=1e-6):
        raise ProfileError(f"{where}.reference: one share per bin ({len(feature.labels)}), summing to 1")
    return feature


def _numbers(raw: Any, where: str) -> tuple[float, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ProfileError(f"{where}: expected a list of numbers")
    try:
        values = tuple(float(v) for v in raw)
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: expected a list of numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ProfileError(f"{where}: numbers must be finite")
    return values
