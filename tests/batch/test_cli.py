"""`mlrollout-batch` on real MLflow-saved models: every row scored once, ids carried, predictions equal
to MLflow pyfunc's, shards and resumed runs giving the same bytes, bad input named by file, line and
column with no output presented as complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from batch_files import NUMERIC_COLUMNS
from mlrollout.serving.batch import cli
from mlrollout.serving.batch.errors import EXIT_BAD_INPUT, EXIT_MODEL
from mlrollout.serving.batch.output import MANIFEST, SUCCESS
from mlrollout.serving.batch.scorer import Job, score
from mlrollout.serving.loading import load_model

CLI = str(Path(sys.executable).parent / "mlrollout-batch")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, check=False)


def read_csv(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path, dtype={"id": str})


def test_every_row_scored_once_equal_to_pyfunc(
    numeric_model: Path, numeric_csv: Path, pyfunc_oracle: Any, tmp_path: Path
) -> None:
    import pandas as pd

    out = tmp_path / "scores.csv"
    code = cli.main(
        [
            "--model-uri",
            str(numeric_model),
            "--input",
            str(numeric_csv),
            "--output",
            str(out),
            "--id-column",
            "id",
            "--block-mb",
            "0.25",
            "--progress",
            "none",
        ]
    )
    assert code == 0
    got = read_csv(out)
    source = pd.read_csv(numeric_csv, dtype={"id": str})
    assert list(got.columns) == ["id", "prediction"]
    assert got["id"].tolist() == source["id"].tolist()
    expected = pyfunc_oracle(str(numeric_model)).predict(source[NUMERIC_COLUMNS])
    assert got["prediction"].tolist() == [int(v) for v in expected]
    assert not out.with_name(out.name + ".partial").exists()


def test_shards_make_the_same_rows_and_one_manifest(
    numeric_model: Path, numeric_csv: Path, tmp_path: Path
) -> None:
    import pandas as pd

    whole = tmp_path / "whole.csv"
    assert (
        cli.main(
            [
                "--model-uri",
                str(numeric_model),
                "--input",
                str(numeric_csv),
                "--output",
                str(whole),
                "--id-column",
                "id",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    out = tmp_path / "parts"
    base = [
        "--model-uri",
        str(numeric_model),
        "--input",
        str(numeric_csv),
        "--output-dir",
        str(out),
        "--id-column",
        "id",
        "--shards",
        "4",
        "--block-mb",
        "0.1",
        "--progress",
        "none",
    ]
    for shard in (2, 0, 3):
        assert cli.main([*base, "--shard", str(shard)]) == 0
        assert not (out / MANIFEST).exists(), "a manifest before every shard is done"
    assert cli.main([*base, "--shard", "1", "--report", str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["manifest"] is True
    parts = [out / f"part-{i:05d}.csv" for i in range(4)]
    joined = pd.concat([read_csv(p) for p in parts], ignore_index=True)
    assert joined.equals(read_csv(whole))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["rows"] == len(joined) == 20_000
    assert [p["rows"] for p in manifest["parts"]] == [len(read_csv(p)) for p in parts]
    assert (out / SUCCESS).exists()
    # A retried shard (a Job index run again) writes the same bytes.
    before = parts[1].read_bytes()
    assert cli.main([*base, "--shard", "1"]) == 0
    assert parts[1].read_bytes() == before


def test_an_interrupted_run_resumes_without_duplicates(
    numeric_model: Path, numeric_csv: Path, tmp_path: Path
) -> None:
    model = load_model(str(numeric_model))
    out = tmp_path / "scores.csv"
    job = Job(
        model_uri=str(numeric_model),
        source=str(numeric_csv),
        input=numeric_csv,
        output=out,
        id_column="id",
        block_bytes=64 * 1024,
    )
    seen: list[int] = []

    def stop_after_three(progress: Any) -> None:
        seen.append(progress.rows)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score(job, model, stop_after_three)
    assert not out.exists()
    resumed: list[int] = []
    final = score(job, model, lambda p: resumed.append(p.rows))
    assert resumed[0] > seen[-1], "the resumed run started again from the beginning"
    uninterrupted = tmp_path / "again.csv"
    score(Job(**{**job.__dict__, "output": uninterrupted}), model)
    assert out.read_bytes() == uninterrupted.read_bytes()
    assert final.rows == 20_000


@pytest.mark.parametrize(
    ("line", "cell", "message"),
    [
        (1234, "abc", "column 'f3': 'abc' is not a number"),
        (77, "", "missing values in required column(s) {'f3': 1}"),
        (19_999, "inf", "column 'f3': value is not finite"),
    ],
)
def test_a_bad_cell_is_named_by_file_line_and_column(
    numeric_model: Path, numeric_csv: Path, tmp_path: Path, line: int, cell: str, message: str
) -> None:
    lines = numeric_csv.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index("f3")] = cell
    lines[line - 1] = ",".join(cells)
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "parts"
    report = tmp_path / "report.json"
    result = run_cli(
        "--model-uri",
        str(numeric_model),
        "--input",
        str(bad),
        "--output-dir",
        str(out),
        "--shards",
        "2",
        "--shard",
        "1" if line > 10_000 else "0",
        "--report",
        str(report),
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert f"{bad} line {line}: {message}" in result.stderr
    assert json.loads(report.read_text())["error"].startswith(f"{bad} line {line}: ")
    assert not list(out.glob("part-*.csv")), "a failed shard left an output file"
    assert not (out / MANIFEST).exists()


def test_a_missing_required_column_is_named(numeric_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "narrow.csv"
    path.write_text("id,f0,f1\na,1,2\n")
    result = run_cli(
        "--model-uri", str(numeric_model), "--input", str(path), "--output", str(tmp_path / "o.csv")
    )
    assert result.returncode == EXIT_BAD_INPUT
    assert f"{path} line 1: header: missing required column(s) ['f2', 'f3'" in result.stderr


def test_an_unknown_category_is_named(
    categorical_model: tuple[Path, Any], pyfunc_oracle: Any, tmp_path: Path
) -> None:
    path, frame = categorical_model
    rows = frame.head(50).copy()
    good = tmp_path / "good.csv"
    rows.to_csv(good, index_label="id")
    out = tmp_path / "o.csv"
    assert (
        cli.main(
            [
                "--model-uri",
                str(path),
                "--input",
                str(good),
                "--output",
                str(out),
                "--id-column",
                "id",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    expected = pyfunc_oracle(str(path)).predict(rows)
    assert read_csv(out)["prediction"].tolist() == [int(v) for v in expected]
    rows.iloc[9, rows.columns.get_loc("plan")] = "platinum"
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index_label="id")
    result = run_cli("--model-uri", str(path), "--input", str(bad), "--output", str(out))
    assert result.returncode == EXIT_BAD_INPUT
    assert f"{bad} line 11: column 'plan': unknown category 'platinum'" in result.stderr


def test_a_model_that_cannot_load_exits_3(tmp_path: Path, numeric_csv: Path) -> None:
    result = run_cli(
        "--model-uri", str(tmp_path), "--input", str(numeric_csv), "--output", str(tmp_path / "o.csv")
    )
    assert result.returncode == EXIT_MODEL
    assert "no MLmodel file" in result.stderr


def test_parquet_input(numeric_model: Path, numeric_csv: Path, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(numeric_csv, dtype={"id": str})
    path = tmp_path / "rows.parquet"
    frame.to_parquet(path, row_group_size=3000)
    whole = tmp_path / "whole.csv"
    assert (
        cli.main(
            [
                "--model-uri",
                str(numeric_model),
                "--input",
                str(numeric_csv),
                "--output",
                str(whole),
                "--id-column",
                "id",
                "--progress",
                "none",
            ]
        )
        == 0
    )
    out = tmp_path / "parts"
    for shard in range(3):
        assert (
            cli.main(
                [
                    "--model-uri",
                    str(numeric_model),
                    "--input",
                    str(path),
                    "--output-dir",
                    str(out),
                    "--id-column",
                    "id",
                    "--shards",
                    "3",
                    "--shard",
                    str(shard),
                    "--progress",
                    "none",
                ]
            )
            == 0
        )
    joined = pd.concat([read_csv(out / f"part-{i:05d}.csv") for i in range(3)]).sort_values("id")
    assert joined.set_index("id")["prediction"].equals(
        read_csv(whole).sort_values("id").set_index("id")["prediction"]
    )


def test_progress_counts_this_shards_bytes(numeric_model: Path, numeric_csv: Path, tmp_path: Path) -> None:
    model = load_model(str(numeric_model))
    shares: list[float] = []
    job = Job(model_uri=str(numeric_model), source=str(numeric_csv), input=numeric_csv,
              output=tmp_path / "p.csv", shard=3, shards=4, block_bytes=32 * 1024)  # fmt: skip
    score(job, model, lambda p: shares.append(p.done / p.total))
    assert shares == sorted(shares)
    assert shares[0] > 0
    assert shares[-1] == 1.0


def test_another_shards_checkpoint_is_not_another_run(
    numeric_model: Path, numeric_csv: Path, tmp_path: Path
) -> None:
    """Shards run at the same time: shard 1 starts while shard 0's checkpoint is on the volume."""
    model = load_model(str(numeric_model))
    out = tmp_path / "parts"
    out.mkdir()
    base = ["--model-uri", str(numeric_model), "--input", str(numeric_csv), "--output-dir", str(out),
            "--shards", "2", "--progress", "none"]  # fmt: skip
    job = Job(model_uri=str(numeric_model), source=str(numeric_csv), input=numeric_csv,
              output=out / "part-00000.csv", shard=0, shards=2, block_bytes=64 * 1024)  # fmt: skip

    def stop(progress: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score(job, model, stop)
    assert (out / "part-00000.csv.partial.json").exists()
    assert cli.main([*base, "--shard", "1"]) == 0
