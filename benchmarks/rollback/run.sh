#!/usr/bin/env bash
# Rollback reaction time: the analysis run that reaches failureLimit -> ModelDeployment status with the
# canary gone and weight 0. Runs the e2e scenario "a canary that returns errors" (real operator, control
# plane, MLflow, gunicorn serving, Prometheus) RUNS times in one session; results in results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$PWD/benchmarks/rollback/results.json"
rm -f "$out"
test_id="tests/e2e/test_canary_analysis.py::test_e2e_erroring_canary_is_rolled_back"
ids=()
for _ in $(seq "${RUNS:-3}"); do ids+=("$test_id"); done
MLROLLOUT_ROLLBACK_RESULTS="$out" .venv/bin/pytest -q -p no:cacheprovider --keep-duplicates "${ids[@]}"
.venv/bin/python - "$out" <<'PY'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))
r = [x["reaction_seconds_observed"] for x in runs]
print(f"runs {len(r)}: reaction s min {min(r):.3f} median {statistics.median(r):.3f} max {max(r):.3f}; "
      f"target <= interval {runs[0]['analysis_interval_seconds']}s + 2s")
PY
