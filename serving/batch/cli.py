"""`mlrollout-batch`: score a CSV or Parquet file with a pinned model version, streamed in blocks.

    mlrollout-batch --model-uri models:/churn/7 --input customers.csv --output scores.csv --id-column id
    mlrollout-batch --model-uri ... --input s3://bucket/in.csv --output-dir /data/out --shards 4 --shard 2

Exit codes: 0 done; 2 bad usage or input (the message names the file, line and column); 3 the model
cannot be loaded; 4 the input cannot be read or the output written. A shard of an Indexed Job takes its
index from JOB_COMPLETION_INDEX when --shard is not given."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlparse

from mlrollout.serving.batch.errors import EXIT_IO, EXIT_MODEL, EXIT_OK, BatchError, BatchIOError
from mlrollout.serving.batch.output import check_output_dir, finish_shard, part_name
from mlrollout.serving.batch.scorer import Job, Progress, score

PROGRESS_EVERY_TTY = 0.5
PROGRESS_EVERY_LOG = 10.0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlrollout-batch", description=__doc__.split("\n")[0])
    p.add_argument("--model-uri", default=os.environ.get("MLROLLOUT_MODEL_URI"), help="pinned model URI")
    p.add_argument("--input", required=True, help="CSV or Parquet: a path, file:// or an MLflow artifact URI")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--output", help="the predictions file (CSV)")
    target.add_argument("--output-dir", help="a directory for part-<shard>.csv files and manifest.json")
    p.add_argument("--id-column", help="an input column copied to the output beside each prediction")
    p.add_argument("--shards", type=int, default=1, help="how many shards the input is split into")
    p.add_argument("--shard", type=int, help="this process's shard (default: JOB_COMPLETION_INDEX or 0)")
    p.add_argument(
        "--block-mb",
        type=float,
        default=float(os.environ.get("MLROLLOUT_BATCH_BLOCK_MB", "8")),
        help="input read per block, bounds memory (default: MLROLLOUT_BATCH_BLOCK_MB or 8)",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left by an earlier run")
    p.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto")
    p.add_argument("--report", help="write a JSON summary (or the error) here, e.g. /dev/termination-log")
    p.add_argument("--allow-pickle", action="store_true", default=_env_bool("MLROLLOUT_ALLOW_PICKLE"))
    p.add_argument("--no-fastpath", action="store_true", default=not _env_bool("MLROLLOUT_FASTPATH", True))
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    # As a pod's PID 1 an unhandled SIGTERM would be ignored until the kubelet's SIGKILL; exit at once
    # instead (the checkpoint never points past what is on disk, so a retry resumes correctly).
    signal.signal(signal.SIGTERM, _terminated)
    try:
        summary = run(args)
    except BatchError as exc:
        _fail(args, exc.message)
        return exc.exit_code
    except MemoryError:
        _fail(args, f"out of memory with --block-mb {args.block_mb}: give it more memory or smaller blocks")
        return EXIT_IO
    _report(args.report, summary)
    return EXIT_OK


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> dict[str, Any]:
    shard = args.shard if args.shard is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    if not args.model_uri:
        raise BatchError("set --model-uri (or MLROLLOUT_MODEL_URI) to the pinned model")
    if args.shards < 1 or not 0 <= shard < args.shards:
        raise BatchError(
            f"--shard must be in [0, {args.shards}) and --shards at least 1 (got {shard}/{args.shards})"
        )
    if args.shards > 1 and not args.output_dir:
        raise BatchError("--shards > 1 writes one part per shard: give --output-dir")
    if args.block_mb <= 0:
        raise BatchError("--block-mb must be positive")
    model = _load(args)
    local = local_input(args.input)
    if args.output_dir:
        directory = Path(args.output_dir)
        _mkdir(directory)
        output = directory / part_name(shard)
    else:
        output = Path(args.output)
        _mkdir(output.parent)
    job = Job(
        model_uri=args.model_uri,
        source=args.input,
        input=local,
        output=output,
        id_column=args.id_column,
        shard=shard,
        shards=args.shards,
        block_bytes=int(args.block_mb * 1024 * 1024),
        resume=not args.no_resume,
    )
    identity = job.identity()
    if args.output_dir:
        check_output_dir(directory, identity)
    meter = Meter(_progress_mode(args.progress), sys.stderr)
    try:
        progress = score(job, model, meter.update)
    except OSError as exc:
        raise BatchIOError(f"I/O error while scoring {args.input}: {exc}") from exc
    meter.done(progress, output)
    summary = {
        "rows": progress.rows,
        "seconds": round(progress.seconds, 3),
        "rowsPerSecond": round(progress.rows_per_second, 1),
        "shard": shard,
        "output": str(output),
        "model": args.model_uri,
    }
    if args.output_dir:
        summary["manifest"] = finish_shard(directory, shard, identity, summary)
    return summary


def _load(args: argparse.Namespace) -> Any:
    from mlrollout.serving.loading import ModelLoadError, load_model

    trusted = [t.strip() for t in os.environ.get("MLROLLOUT_SKOPS_TRUSTED_TYPES", "").split(",") if t.strip()]
    try:
        return load_model(
            args.model_uri,
            extra_trusted=trusted,
            allow_pickle=args.allow_pickle,
            fastpath=not args.no_fastpath,
        )
    except ModelLoadError as exc:
        error = BatchError(f"cannot load model {args.model_uri}: {exc}")
        error.exit_code = EXIT_MODEL
        raise error from exc


def local_input(uri: str) -> Path:
    """A local path for the input: plain paths and file:// as they are, other URIs downloaded (to disk,
    never into memory) through MLflow's artifact repositories."""
    parsed = urlparse(uri)
    if parsed.scheme in {"", "file"}:
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not path.is_file():
            raise BatchError(f"input {uri}: no such file")
        return path
    try:
        from mlflow.artifacts import download_artifacts

        return Path(
            download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="mlrollout-batch-"))
        )
    except Exception as exc:  # MLflow raises many kinds; all mean "cannot fetch this URI"
        raise BatchIOError(f"cannot download input {uri}: {exc}") from exc


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchIOError(f"cannot create {path}: {exc}") from exc


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _progress_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    return "bar" if sys.stderr.isatty() else "log"


def _report(path: str | None, value: dict[str, Any]) -> None:
    if path:
        try:
            Path(path).write_text(json.dumps(value, sort_keys=True))
        except OSError as exc:
            print(f"mlrollout-batch: cannot write the report to {path}: {exc}", file=sys.stderr)


def _fail(args: argparse.Namespace, message: str) -> None:
    print(f"mlrollout-batch: {message}", file=sys.stderr)
    if args.report:
        # Kubernetes keeps at most 4096 bytes of a termination message.
        _report(args.report, {"error": message[:3500]})


class Meter:
    """Rows and rows/s on stderr: a redrawn bar on a terminal, a line every 10 s in a log."""

    def __init__(self, mode: str, stream: TextIO) -> None:
        self.mode = mode
        self.stream = stream
        self.last = 0.0

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        every = PROGRESS_EVERY_TTY if self.mode == "bar" else PROGRESS_EVERY_LOG
        if self.mode == "none" or now - self.last < every:
            return
        self.last = now
        share = progress.done / progress.total if progress.total else 1.0
        if self.mode == "bar":
            filled = int(share * 30)
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} {progress.rows:>12,} rows "
                f"{progress.rows_per_second:>10,.0f} rows/s"
            )
        else:
            self.stream.write(f"{share:.1%} {progress.rows} rows {progress.rows_per_second:.0f} rows/s\n")
        self.stream.flush()

    def done(self, progress: Progress, output: Path) -> None:
        if self.mode == "none":
            return
        end = "\n" if self.mode == "bar" else ""
        self.stream.write(
            f"{end}scored {progress.rows:,} rows in {progress.seconds:.1f} s "
            f"({progress.rows_per_second:,.0f} rows/s) -> {output}\n"
        )
        self.stream.flush()
