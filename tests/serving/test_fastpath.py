"""The numpy re-statements of scikit-learn predict are used only when they reproduce it exactly."""

from __future__ import annotations

import numpy as np
import pytest
from mlrollout.serving.fastpath import verified_fastpath
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [
        (load_breast_cancer, make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))),
        (load_iris, LogisticRegression(max_iter=1000)),
        (load_iris, make_pipeline(StandardScaler(with_mean=False), LogisticRegression(max_iter=1000))),
        (load_iris, DecisionTreeClassifier(max_depth=4, random_state=0)),
    ],
    ids=["binary-pipeline", "multiclass", "scale-only", "tree"],
)
def test_covered_estimators_compile_and_match(dataset, estimator) -> None:  # type: ignore[no-untyped-def]
    x, y = dataset(return_X_y=True)
    estimator.fit(x, y)
    compiled = verified_fastpath(estimator, x.shape[1], x)
    assert compiled is not None
    np.testing.assert_array_equal(compiled(x), estimator.predict(x))
    for i in range(0, len(x), 37):
        assert compiled(x[i : i + 1]).tolist() == estimator.predict(x[i : i + 1]).tolist()


def test_uncovered_estimators_keep_native_predict() -> None:
    x, y = load_iris(return_X_y=True)
    assert verified_fastpath(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y), 4) is None


def test_a_compiled_path_that_disagrees_is_refused() -> None:
    x, y = load_iris(return_X_y=True)

    class Drifted(LogisticRegression):
        """Looks like sklearn's LogisticRegression, but its predict is not the linear rule."""

        def predict(self, x):  # type: ignore[no-untyped-def]
            return np.zeros(len(x), dtype=int)

    Drifted.__name__ = "LogisticRegression"
    Drifted.__module__ = "sklearn.linear_model._logistic"
    assert verified_fastpath(Drifted(max_iter=1000).fit(x, y), 4) is None


# --------------------------------------------------------------------------- DataFrame pipelines
def churn(rows: int = 400, seed: int = 0):  # type: ignore[no-untyped-def]
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.mlflow_models import churn_frame

    return churn_frame(rows, seed)


def frame_case(prep, final, target: str = "churn"):  # type: ignore[no-untyped-def]
    from mlflow.models import infer_signature
    from mlrollout.serving.loading import schema_of

    frame, label, value = churn()
    pipeline = make_pipeline(prep, final).fit(frame, label if target == "churn" else value)
    schema = schema_of({"signature": {"inputs": infer_signature(frame).inputs.to_json()}})
    return pipeline, schema


def table(frame, schema):  # type: ignore[no-untyped-def]
    out = np.empty((len(frame), schema.width), dtype=object)
    for i, name in enumerate(schema.names):
        out[:, i] = frame[name].tolist()
    return out


def prep(encoder=None, numbers="scale", **options):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder

    steps = [
        ("c", encoder or OneHotEncoder(handle_unknown="error"), ["plan", "region", "contract"]),
        (
            "n",
            StandardScaler() if numbers == "scale" else "passthrough",
            ["tenure_months", "monthly_charges"],
        ),
    ]
    return ColumnTransformer(steps, **options)


def test_dataframe_pipelines_compile_and_match_scikit_learn_exactly() -> None:
    from mlrollout.serving.fastpath import verified_frame_fastpath
    from mlrollout.serving.model import to_frame
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.preprocessing import OneHotEncoder

    cases = [
        (prep(), LogisticRegression(max_iter=500), "churn"),
        (prep(OneHotEncoder(handle_unknown="ignore"), "passthrough"), Ridge(), "value"),
        (prep(), LinearRegression(), "value"),
        (prep(remainder="drop"), DecisionTreeClassifier(max_depth=4, random_state=0), "churn"),
    ]
    fresh, _, _ = churn(60, seed=9)
    for p, final, target in cases:
        pipeline, schema = frame_case(p, final, target)
        compiled = verified_frame_fastpath(pipeline, schema, to_frame)
        assert compiled is not None, (p, final)
        x = table(fresh, schema)
        assert compiled(x).tolist() == pipeline.predict(to_frame(x, schema)).tolist()
        for i in range(0, 60, 13):
            assert (
                compiled(x[i : i + 1]).tolist() == pipeline.predict(to_frame(x[i : i + 1], schema)).tolist()
            )


def test_uncovered_dataframe_pipelines_keep_scikit_learns_predict() -> None:
    from mlrollout.serving.fastpath import verified_frame_fastpath
    from mlrollout.serving.model import to_frame
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    cases = [
        (prep(OrdinalEncoder()), LogisticRegression(max_iter=500), "churn"),
        (prep(OneHotEncoder(drop="first")), LogisticRegression(max_iter=500), "churn"),
        (prep(sparse_threshold=1.0), LogisticRegression(max_iter=500), "churn"),  # sparse output
        (prep(), GradientBoostingRegressor(n_estimators=5), "value"),
    ]
    for p, final, target in cases:
        pipeline, schema = frame_case(p, final, target)
        assert verified_frame_fastpath(pipeline, schema, to_frame) is None, (p, final)


def test_an_unknown_category_is_refused_or_ignored_like_scikit_learn() -> None:
    from mlrollout.serving.fastpath import verified_frame_fastpath
    from mlrollout.serving.model import to_frame
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import OneHotEncoder

    fresh, _, _ = churn(3, seed=4)
    fresh["region"] = ["mars-1", "eu-west", "moon"]
    strict, schema = frame_case(prep(), Ridge(), "value")
    compiled = verified_frame_fastpath(strict, schema, to_frame)
    assert compiled is not None
    with pytest.raises(ValueError, match="unknown category 'mars-1'"):
        compiled(table(fresh, schema))
    lenient, schema = frame_case(prep(OneHotEncoder(handle_unknown="ignore")), Ridge(), "value")
    compiled = verified_frame_fastpath(lenient, schema, to_frame)
    assert compiled is not None
    x = table(fresh, schema)
    assert compiled(x).tolist() == lenient.predict(to_frame(x, schema)).tolist()
