"""The shipped Prometheus rules (manifests/monitoring/prometheus-rules.yaml), run by the real
`promtool test rules` on synthetic series shaped like serving's: the stable version's per-feature
input drift is recorded as PSI (the same number the operator's inputDrift computes), a feature whose
inputs left the training range fires the alert, one that matches training or has too few rows does not."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from mlrollout.operator.analysis.signals import psi
from support.ci import unavailable
from support.prometheus import PrometheusUnavailable, find_promtool

RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "prometheus-rules.yaml"
POD = {"namespace": "shop", "model_deployment": "churn", "track": "stable", "model_version": "4"}
# Two bins and missing: training put half the rows in each bin, none missing.
REFERENCE = {"0": 0.5, "1": 0.5, "__missing__": 0.0}
# Rows per minute per bin: tenure moved entirely into bin 1; plan stays like training; region gets
# one row a minute (60 an hour: below the 100 rows the rule asks for).
LIVE = {"tenure": {"1": 10}, "plan": {"0": 5, "1": 5}, "region": {"0": 1}}


def series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def promtool() -> str:
    try:
        return find_promtool()
    except PrometheusUnavailable as exc:
        unavailable(str(exc))


def smoothed_psi(live: dict[str, float], reference: dict[str, float], eps: float = 1e-4) -> float:
    """What the recording rule computes: sum over bins ((p + eps) - (q + eps)) * ln((p + eps) / (q + eps))."""
    return sum((live[b] - q) * math.log((live[b] + eps) / (q + eps)) for b, q in reference.items())


def render(template: str, labels: dict[str, str], value: float) -> str:
    """The alert's annotation templates, filled in as Prometheus does for these two constructs."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    return text.replace('{{ $value | printf "%.2f" }}', f"{value:.2f}")


def test_the_rules_pass_promtool_check() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 3 rules found" in check.stdout


def test_stable_input_drift_is_recorded_and_alerts_on_the_drifted_feature(tmp_path: Path) -> None:
    inputs: list[dict[str, str]] = []
    for feature, bins in LIVE.items():
        for label, share in REFERENCE.items():
            labels = {**POD, "feature": feature, "bin": label, "pod": "churn-abc"}
            inputs.append(
                {"series": series("mlrollout_input_reference_share", labels), "values": f"{share}x180"}
            )
        for label, per_minute in bins.items():
            labels = {**POD, "feature": feature, "bin": label, "pod": "churn-abc", "exported_track": "stable"}
            inputs.append(
                {"series": series("mlrollout_input_bin_total", labels), "values": f"0+{per_minute}x180"}
            )
    tenure_psi = smoothed_psi({"0": 0.0, "1": 1.0, "__missing__": 0.0}, REFERENCE)
    # The operator's inputDrift also renormalises the smoothed shares: the same verdict, a hair apart.
    assert abs(tenure_psi - psi({"1": 1.0}, REFERENCE)) < 0.01
    alert: dict[str, Any] = next(
        r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if r.get("alert")
    )
    alert_labels = {k: v for k, v in POD.items() if k != "track"} | {"feature": "tenure"}
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": 'mlrollout:input_drift_psi:1h{feature="tenure"}',
                        "eval_time": "90m",
                        "exp_samples": [
                            {
                                "labels": series(
                                    "mlrollout:input_drift_psi:1h", {**POD, "feature": "tenure"}
                                ),
                                "value": tenure_psi,
                            }
                        ],
                    },
                    {
                        # Like training: PSI ~0 (smoothing only); too few rows: not recorded at all.
                        "expr": 'mlrollout:input_drift_psi:1h{feature=~"plan|region"}',
                        "eval_time": "90m",
                        "exp_samples": [
                            {
                                "labels": series("mlrollout:input_drift_psi:1h", {**POD, "feature": "plan"}),
                                "value": 0,
                            }
                        ],
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "MlrolloutInputDrift",
                        "exp_alerts": [],
                    },  # pending (for: 30m)
                    {
                        "eval_time": "120m",
                        "alertname": "MlrolloutInputDrift",
                        "exp_alerts": [
                            {
                                "exp_labels": {**alert_labels, "severity": "warning"},
                                "exp_annotations": {
                                    k: render(v, alert_labels, tenure_psi)
                                    for k, v in alert["annotations"].items()
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    run = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
