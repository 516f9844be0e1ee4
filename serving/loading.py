"""Load one model version at start: from a pinned URI or a plain artifact location.

scikit-learn models saved by MLflow 3.x (skops format) load natively with an allow-list this server
decides, never the list stored inside the artifact (an artifact must not vouch for itself). Pickle-based
artifacts are refused unless the operator opts in with MLROLLOUT_ALLOW_PICKLE=true."""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlparse

import numpy as np
import yaml
from mlrollout.serving.fastpath import resolve_columns, verified_fastpath, verified_frame_fastpath
from mlrollout.serving.model import LoadedModel, NativePredictor, PyfuncPredictor, Task, to_frame
from mlrollout.serving.parsing import is_missing
from mlrollout.serving.profile import Profile, ProfileError, profile_of
from mlrollout.serving.schema import InputSchema, SchemaError

# Types the default skops allow-list leaves out, that this server trusts after checking them itself.
VERIFIED_SKOPS_TYPES = frozenset({"sklearn.tree._tree.Tree"})
TREE_LEAF = -1
TREE_UNDEFINED_FEATURE = -2


log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model cannot be served; the message says why and what to change."""


def resolve_model_dir(uri: str) -> Path:
    """A local directory holding MLmodel: plain paths and file:// as-is, anything else downloaded."""
    parsed = urlparse(uri)
    if parsed.scheme in {"", "file"}:
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not (path / "MLmodel").is_file():
            raise ModelLoadError(f"no MLmodel file under {path} (model URI {uri!r})")
        return path
    location = registry_download_uri(uri)
    if location is not None:
        local = Path(unquote(urlparse(location).path)) if location.startswith(("file:", "/")) else None
        if local is not None and (local / "MLmodel").is_file():
            return local  # a pinned version on a shared/local artifact root: no MLflow import needed
        uri = location
    try:
        from mlflow.artifacts import download_artifacts

        target = tempfile.mkdtemp(prefix="mlrollout-model-")
        local = Path(download_artifacts(artifact_uri=uri, dst_path=target))
    except Exception as exc:  # MLflow raises many kinds; all mean "cannot fetch this URI"
        raise ModelLoadError(f"cannot download model {uri!r}: {exc}") from exc
    if not (local / "MLmodel").is_file():
        raise ModelLoadError(f"downloaded {uri!r} to {local} but it has no MLmodel file")
    return local


def registry_download_uri(uri: str, timeout: float = 30.0) -> str | None:
    """Ask an HTTP tracking server where a pinned version's files are, with one REST call.

    Importing MLflow takes seconds; a start-up that only needs one registry lookup should not pay that.
    Returns None when this shortcut does not apply (then MLflow's own client resolves the URI)."""
    name, version = name_and_version(uri)
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    if name is None or not tracking.startswith(("http://", "https://")):
        return None
    query = urlencode({"name": name, "version": version})
    request = urllib.request.Request(  # noqa: S310 - the scheme is http(s), checked above
        f"{tracking.rstrip('/')}/api/2.0/mlflow/model-versions/get-download-uri?{query}"
    )
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    elif user and password:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) checked above
            location = json.loads(response.read()).get("artifact_uri")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot resolve {uri!r} at {tracking}: {exc}") from exc
    return location if isinstance(location, str) and location else None


def name_and_version(uri: str) -> tuple[str | None, str | None]:
    """models:/name/7 -> ("name", "7"); other URIs carry no registry identity."""
    if uri.startswith("models:/"):
        parts = uri[len("models:/") :].strip("/").split("/")
        if len(parts) == 2 and parts[1].isdigit():
            return parts[0], parts[1]
    return None, None


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    data = yaml.safe_load((model_dir / "MLmodel").read_text())
    if not isinstance(data, dict) or "flavors" not in data:
        raise ModelLoadError(f"{model_dir / 'MLmodel'} has no flavors")
    return data


def schema_of(mlmodel: dict[str, Any], estimator: Any = None) -> InputSchema:
    signature = mlmodel.get("signature") or {}
    try:
        if signature.get("inputs"):
            return InputSchema.from_signature_inputs(signature["inputs"])
        names = getattr(estimator, "feature_names_in_", None)
        if names is not None:
            return InputSchema.from_feature_names([str(n) for n in names])
    except SchemaError as exc:
        raise ModelLoadError(f"model signature cannot be served: {exc}") from exc
    raise ModelLoadError("model has no input signature; log it with a signature (mlflow infer_signature)")


# --------------------------------------------------------------------------- skops
def trusted_skops_types(untrusted: Iterable[str], extra_trusted: Iterable[str]) -> list[str]:
    """Pure decision: which of the file's non-default types to trust, or raise naming the rest."""
    allowed = VERIFIED_SKOPS_TYPES | frozenset(extra_trusted)
    found = sorted(set(untrusted))
    refused = [t for t in found if t not in allowed]
    if refused:
        raise ModelLoadError(
            f"the skops file needs types this server does not trust: {refused}. If you reviewed them, "
            "list them in MLROLLOUT_SKOPS_TRUSTED_TYPES (comma-separated)"
        )
    return found


def load_skops(path: Path, extra_trusted: Iterable[str] = ()) -> Any:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
        trusted = trusted_skops_types(untrusted, extra_trusted)
        estimator = skops.io.load(path, trusted=trusted)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load skops file {path}: {exc}") from exc
    for tree in find_trees(estimator):
        check_tree(tree)
    return estimator


def find_trees(estimator: Any, depth: int = 0) -> Iterator[Any]:
    """Every sklearn Tree inside an estimator, pipeline or ensemble (bounded depth)."""
    if depth > 8 or estimator is None:
        return
    tree = getattr(estimator, "tree_", None)
    if tree is not None and type(tree).__name__ == "Tree":
        yield tree
    for step in getattr(estimator, "steps", None) or []:
        yield from find_trees(step[1], depth + 1)
    members = getattr(estimator, "estimators_", None)
    if members is not None:
        for member in np.asarray(members, dtype=object).ravel():
            yield from find_trees(member, depth + 1)


def check_tree(tree: Any) -> None:
    """sklearn indexes node arrays without bounds checks: refuse a tree whose indices could escape.

    Children must point forward (so traversal ends) and inside the node array; split features must
    be real feature positions."""
    count = int(tree.node_count)
    left = np.asarray(tree.children_left)
    right = np.asarray(tree.children_right)
    feature = np.asarray(tree.feature)
    nodes = np.arange(count)
    if not (len(left) == len(right) == len(feature) == count and np.asarray(tree.value).shape[0] == count):
        raise ModelLoadError("a decision tree in the model has inconsistent node arrays")
    leaf = left == TREE_LEAF
    if not np.array_equal(leaf, right == TREE_LEAF):
        raise ModelLoadError("a decision tree in the model has half-leaf nodes")
    inner = ~leaf
    for child in (left, right):
        if not ((child[inner] > nodes[inner]) & (child[inner] < count)).all():
            raise ModelLoadError("a decision tree in the model has child indices out of range")
    n_features = int(tree.n_features)
    split = feature[inner]
    if not ((split >= 0) & (split < n_features)).all() or not (feature[leaf] == TREE_UNDEFINED_FEATURE).all():
        raise ModelLoadError("a decision tree in the model splits on features out of range")


# --------------------------------------------------------------------------- entry point
def load_model(
    uri: str,
    *,
    name: str | None = None,
    version: str | None = None,
    extra_trusted: Iterable[str] = (),
    allow_pickle: bool = False,
    fastpath: bool = True,
) -> LoadedModel:
    started = time.monotonic()
    model_dir = resolve_model_dir(uri)
    mlmodel = read_mlmodel(model_dir)
    uri_name, uri_version = name_and_version(uri)
    name = name or uri_name or "model"
    version = version or uri_version or "0"
    flavors = mlmodel["flavors"]
    sklearn_conf = flavors.get("sklearn")
    if sklearn_conf and sklearn_conf.get("serialization_format") == "skops":
        estimator = load_skops(model_dir / sklearn_conf["pickled_model"], extra_trusted)
        schema = schema_of(mlmodel, estimator)
        check_estimator_width(estimator, schema)
        classes = getattr(estimator, "classes_", None)
        frame = needs_frame(estimator, schema)
        compiled = None
        if fastpath:
            compiled = (
                verified_frame_fastpath(estimator, schema, to_frame)
                if frame
                else verified_fastpath(estimator, schema.width)
            )
        return LoadedModel(
            name=name,
            version=version,
            schema=schema,
            predictor=NativePredictor(estimator, compiled, schema if frame else None),
            flavor="sklearn",
            source=uri,
            classes=tuple(c.item() if hasattr(c, "item") else c for c in classes)
            if classes is not None
            else None,
            load_seconds=time.monotonic() - started,
            extra={"fastpath": compiled is not None, "frame": frame},
            task=task_of(estimator, classes),
            categories=known_categories(estimator, schema),
            profile=training_profile_of(mlmodel, uri),
        )
    if not allow_pickle:
        kinds = sorted(flavors)
        raise ModelLoadError(
            f"model flavors {kinds} need pickle-based loading, which can run arbitrary code; set "
            "MLROLLOUT_ALLOW_PICKLE=true only for artifacts you trust"
        )
    try:
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
        import mlflow.pyfunc

        pyfunc_model = mlflow.pyfunc.load_model(str(model_dir))
    except Exception as exc:
        raise ModelLoadError(f"cannot load {uri!r} as a pyfunc model: {exc}") from exc
    schema = schema_of(mlmodel)
    return LoadedModel(
        name=name,
        version=version,
        schema=schema,
        predictor=PyfuncPredictor(pyfunc_model, schema),
        flavor="pyfunc",
        source=uri,
        load_seconds=time.monotonic() - started,
        profile=training_profile_of(mlmodel, uri),
    )


def training_profile_of(mlmodel: dict[str, Any], uri: str) -> Profile | None:
    """The version's training profile, if one was logged. A broken profile never stops serving (it
    only feeds monitoring): it is logged and the version serves as if it had none."""
    try:
        return profile_of(mlmodel)
    except ProfileError as exc:
        log.warning("ignoring the training profile of %s: %s", uri, exc)
        return None


def check_estimator_width(estimator: Any, schema: InputSchema) -> None:
    """The signature's column order is the order the estimator was fitted on, or serving is wrong."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and tuple(str(n) for n in fitted) != schema.names:
        raise ModelLoadError(
            "the signature's columns differ from the columns the estimator was fitted on: "
            f"{json.dumps(list(schema.names)[:5])}... vs {json.dumps([str(n) for n in fitted][:5])}..."
        )
    width = getattr(estimator, "n_features_in_", None)
    if width is not None and int(width) != schema.width:
        raise ModelLoadError(f"the estimator expects {width} features but the signature has {schema.width}")


# --------------------------------------------------------------------------- mixed-type models
COLUMN_SELECTORS = frozenset({"ColumnTransformer"})
ENCODERS = frozenset({"OneHotEncoder", "OrdinalEncoder"})


def _sklearn(estimator: Any, names: frozenset[str]) -> bool:
    kind = type(estimator)
    return kind.__name__ in names and kind.__module__.split(".")[0] == "sklearn"


def _parts(estimator: Any, depth: int = 0) -> Iterator[Any]:
    """The estimator and every step of its pipelines (bounded depth)."""
    if depth > 8 or estimator is None:
        return
    yield estimator
    for step in getattr(estimator, "steps", None) or []:
        yield from _parts(step[1], depth + 1)


def needs_frame(estimator: Any, schema: InputSchema) -> bool:
    """String columns, or a ColumnTransformer (it selects columns by name): predict on a DataFrame."""
    return schema.has_strings or any(_sklearn(p, COLUMN_SELECTORS) for p in _parts(estimator))


def task_of(estimator: Any, classes: Any) -> Task:
    if classes is not None:
        return "classifier"
    try:
        from sklearn.base import is_regressor

        return "regressor" if is_regressor(estimator) else "unknown"
    except Exception:  # an estimator whose tags cannot be read is simply not known to be a regressor
        return "unknown"


def known_categories(estimator: Any, schema: InputSchema) -> dict[int, frozenset[Any]]:
    """Schema position -> the categories of a fitted OneHotEncoder/OrdinalEncoder with
    handle_unknown='error' that reads that column directly (first in its ColumnTransformer branch),
    so an unseen value is refused as a 422 naming the column and the value before the model runs."""
    found: dict[int, frozenset[Any]] = {}
    for part in _parts(estimator):
        if not _sklearn(part, COLUMN_SELECTORS):
            continue
        for _, transformer, columns in getattr(part, "transformers_", None) or []:
            encoder = transformer
            steps = getattr(transformer, "steps", None)
            if steps:
                encoder = steps[0][1]
            if not _sklearn(encoder, ENCODERS) or getattr(encoder, "handle_unknown", None) != "error":
                continue
            positions = resolve_columns(columns, schema)
            categories = getattr(encoder, "categories_", None)
            if positions is None or categories is None or len(categories) != len(positions):
                continue
            for position, values in zip(positions, categories, strict=True):
                fitted = np.asarray(values, dtype=object).tolist()
                allowed = frozenset(v for v in fitted if not is_missing(v))
                found[position] = found[position] & allowed if position in found else allowed
    return found
