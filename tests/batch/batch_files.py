"""Input files for the batch tests and the benchmark: ids, eight float columns, one ignored label."""

from __future__ import annotations

from pathlib import Path

NUMERIC_COLUMNS = [f"f{i}" for i in range(8)]


def write_numeric_csv(path: Path, rows: int, seed: int = 0, chunk: int = 200_000) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            frame = pd.DataFrame(rng.normal(size=(n, len(NUMERIC_COLUMNS))), columns=NUMERIC_COLUMNS)
            frame.insert(0, "id", [f"row-{i}" for i in range(start, start + n)])
            frame["label"] = rng.integers(0, 2, size=n)
            frame.to_csv(f, index=False, header=start == 0, lineterminator="\n")
