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
