"""Batch scoring: rows/s and peak RSS of `mlrollout-batch` against `mlflow models predict` and a plain
pandas + pyfunc loop, on the same generated CSV and the same MLflow-saved model, in one run.

    flock /tmp/mlrollout-heavy.lock .venv/bin/python -P benchmarks/batch/run.py --rows 1000000

Each contender is a fresh process timed end to end (start, model load, read, score, write), its peak
RSS from wait4(). mlrollout-batch also runs on a quarter of the rows: a bounded-memory scorer has the
same peak RSS on both files; `mlflow models predict` reads the whole file into memory, so it does not."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "batch"))

from batch_files import NUMERIC_COLUMNS, write_numeric_csv  # noqa: E402

BIN = Path(sys.executable).parent
PANDAS_LOOP = """
import os, sys
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
columns = sys.argv[4].split(",")
with open(sys.argv[3], "w") as out:
    out.write("id,prediction\\n")
    for chunk in pd.read_csv(sys.argv[2], chunksize=100_000, dtype={"id": str}):
        pd.DataFrame({"id": chunk["id"], "prediction": model.predict(chunk[columns])}).to_csv(
            out, header=False, index=False)
"""


def save_model(path: Path) -> None:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000, len(NUMERIC_COLUMNS))), columns=NUMERIC_COLUMNS)
    y = (x["f0"] + 0.5 * x["f1"] - x["f2"] > 0).astype("int64")
    estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    signature = infer_signature(x.head(), estimator.predict(x.head()))
    mlflow.sklearn.save_model(estimator, str(path), signature=signature)


def measure(name: str, argv: list[str], rows: int) -> dict[str, float | str]:
    """Wall time and peak RSS under GNU time: the contender is forked from that small process, not
    from this one (Linux keeps a process's peak RSS across exec, so a child forked from this
    benchmark, with pandas and MLflow loaded, would report at least this process's RSS)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        started = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}")
        rss_kb = int(report.read().split()[-1])
    return {"name": name, "rows": rows, "seconds": seconds, "rows_s": rows / seconds, "rss_mb": rss_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlrollout-batch-bench-"))
    model = work / "model"
    save_model(model)
    big, small, one = work / "rows.csv", work / "quarter.csv", work / "one.csv"
    write_numeric_csv(big, args.rows, seed=1)
    write_numeric_csv(small, args.rows // 4, seed=1)
    write_numeric_csv(one, 1, seed=1)
    ours = [
        str(BIN / "mlrollout-batch"),
        "--model-uri",
        str(model),
        "--id-column",
        "id",
        "--progress",
        "none",
    ]
    columns = ",".join(NUMERIC_COLUMNS)

    def batch(src: Path) -> list[str]:
        return [*ours, "--input", str(src), "--output", str(work / f"batch-{src.stem}.csv")]

    def loop(src: Path) -> list[str]:
        out = str(work / f"loop-{src.stem}.csv")
        return [sys.executable, "-P", "-c", PANDAS_LOOP, str(model), str(src), out, columns]

    def mlflow(src: Path) -> list[str]:
        return [str(BIN / "mlflow"), "models", "predict", "-m", str(model), "-i", str(src), "-t", "csv",
                "-o", str(work / f"mlflow-{src.stem}.json"), "--env-manager", "local"]  # fmt: skip

    contenders = [
        ("mlrollout-batch", batch),
        ("pandas + pyfunc loop (100k-row chunks)", loop),
        ("mlflow models predict --env-manager local", mlflow),
    ]
    results: list[dict[str, float | str]] = []
    for name, argv in contenders:
        measure(name, argv(one), 1)  # warm-up: page cache and bytecode, as every later run has them
        fixed = measure(name, argv(one), 1)
        for label, src, rows in (("", big, args.rows), (" (1/4 of the rows)", small, args.rows // 4)):
            result = measure(name + label, argv(src), rows)
            result["fixed_s"] = fixed["seconds"]
            result["scoring_rows_s"] = rows / max(1e-9, float(result["seconds"]) - float(fixed["seconds"]))
            results.append(result)
    anchor = next(r for r in results if r["name"] == contenders[2][0])
    size = big.stat().st_size / 1e6
    print(f"# {args.rows:,} rows x {len(NUMERIC_COLUMNS)} float columns + id + label, {size:.0f} MB CSV")
    print(f"# {platform.node()} {len(os.sched_getaffinity(0))} cores, python {platform.python_version()}")
    print(
        "| contender | rows | s | rows/s | x mlflow | 1-row run s | scoring rows/s | x mlflow | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        scoring = float(r["scoring_rows_s"])
        print(
            f"| {r['name']} | {r['rows']:,} | {float(r['seconds']):.1f} | {float(r['rows_s']):,.0f} | "
            f"{float(r['rows_s']) / float(anchor['rows_s']):.1f} | {float(r['fixed_s']):.1f} | "
            f"{scoring:,.0f} | "
            f"{scoring / float(anchor['scoring_rows_s']):.1f} | {float(r['rss_mb']):.0f} |"
        )


if __name__ == "__main__":
    main()
