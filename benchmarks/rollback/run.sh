#!/usr/bin/env bash
# Rollback reaction time: the analysis run that reaches failureLimit -> ModelDeployment status with the
# canary gone and weight 0. Runs the real-pod scenario "a canary answering 500s" (the installed operator's
# 2 pods, serving pods on the real node, Prometheus with Kubernetes discovery, in-cluster locust load)
# RUNS times in one session; results in results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$PWD/benchmarks/rollback/results.json"
rm -f "$out"
MLROLLOUT_ROLLBACK_RUNS="${RUNS:-3}" MLROLLOUT_ROLLBACK_RESULTS="$out" .venv/bin/pytest -q -p no:cacheprovider \
  tests/realnode/test_analysis.py -k 500s
.venv/bin/python - "$out" <<'PY'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))
r = [x["reaction_seconds_observed"] for x in runs]
print(f"runs {len(r)}: reaction s min {min(r):.3f} median {statistics.median(r):.3f} max {max(r):.3f}; "
      f"target <= interval {runs[0]['analysis_interval_seconds']}s + 2s")
PY
