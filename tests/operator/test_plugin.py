"""The plugin's pure parts: intents, the snapshot of a ModelDeployment with its Deployments, pods and
Events, the views (status frame, piped lines, tree, history), -o json|yaml, the --watch decision and
exit codes, completion and the subcommand table. Against real kubectl: tests/realnode/test_inspection.py."""

from __future__ import annotations

import argparse
import copy
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from mlrollout.operator.plugin import (
    COMMANDS,
    Command,
    PluginError,
    intent_patch,
    register,
    undo_patch,
    undo_target,
)
from mlrollout.operator.plugin.cli import build_parser, main
from mlrollout.operator.plugin.completion import NO_FILES, complete, script
from mlrollout.operator.plugin.kubectl import Kubectl, NotFound
from mlrollout.operator.plugin.output import render_data
from mlrollout.operator.plugin.snapshot import outcome_of, snapshot, to_data
from mlrollout.operator.plugin.views import frame, history, history_entries, progress_lines, tree
from mlrollout.operator.plugin.watch import (
    EXIT_ERROR,
    EXIT_NOT_PROMOTED,
    EXIT_PROMOTED,
    EXIT_TIMEOUT,
    LineLog,
    Watch,
    parse_duration,
)

NOW = datetime(2026, 1, 1, 12, 10, tzinfo=UTC)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


MD: dict[str, Any] = {
    "metadata": {"name": "churn", "namespace": "ml", "generation": 5},
    "spec": {
        "model": {"name": "churn", "version": "3"},
        "serving": {"image": "serve:1", "replicas": 2},
        "rollout": {"steps": [{"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}]},
    },
    "status": {
        "phase": "Progressing",
        "message": "step 2/3: waiting for canary analysis",
        "observedGeneration": 5,
        "stable": {"version": "2", "modelUri": "models:/churn/2", "deployment": "churn-v2-aa",
                   "gateValue": 0.91},
        "canary": {"version": "3", "modelUri": "models:/churn/3", "deployment": "churn-v3-aa",
                   "gateValue": 0.93},
        "weight": 50,
        "currentStepIndex": 1,
        "history": [{"revision": 1, "version": "1", "modelUri": "models:/churn/1",
                     "deployment": "churn-v1-aa", "gateValue": 0.9, "promotedAt": at(30)}],
        "lastAnalysis": {
            "canaryVersion": "3", "verdict": "Passed", "action": "Proceed", "evaluatedAt": at(0.5),
            "message": "all passed", "consecutiveFailures": 0,
            "metrics": {
                "errorRate": {"value": 0.0, "threshold": 0.05, "direction": "<=", "samples": 189,
                              "verdict": "Passed"},
                "liveF1": {"value": 0.986, "threshold": 0.9, "direction": ">=", "samples": 181,
                           "verdict": "Passed"},
            },
        },
        "conditions": [
            cond("Promoted", "Unknown", "Progressing", "step 2/3: waiting for canary analysis"),
            cond("Ready", "True", "Available", "version 2: 1 pods ready"),
            cond("Settled", "False", "Progressing"),
        ],
    },
}  # fmt: skip


def deployment(
    name: str, version: str, track: str, replicas: int, ready: int, minutes: float
) -> dict[str, Any]:
    labels = {"mlrollout.io/version": version, "mlrollout.io/revision": "aa", "mlrollout.io/track": track}
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": at(minutes)},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready} if ready else {},
    }


def pod(
    name: str, version: str, ready: bool, restarts: int = 0, waiting: str | None = None
) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"mlrollout.io/version": version, "mlrollout.io/revision": "aa"},
            "creationTimestamp": at(2),
        },
        "spec": {"containers": [{"name": "serving"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"ready": ready, "restartCount": restarts, "state": state}],
        },
    }


DEPLOYMENTS = [
    deployment("churn-v1-aa", "1", "retired", 0, 0, 40),
    deployment("churn-v3-aa", "3", "canary", 1, 1, 3),
    deployment("churn-v2-aa", "2", "stable", 1, 1, 20),
]
PODS = [
    pod("churn-v2-aa-x1", "2", True),
    pod("churn-v3-aa-y1", "3", True, restarts=1),
    pod("churn-v3-aa-y2", "3", False, waiting="ContainerCreating"),
]
EVENTS = [
    {"type": "Normal", "reason": "CanaryStarted", "message": "version 3 starts as canary",
     "lastTimestamp": at(3)},
    {"type": "Normal", "reason": "GatePassed", "message": "f1_score 0.93 >= 0.85", "lastTimestamp": at(3.1)},
    {"type": "Normal", "reason": "StepCompleted", "message": "step 1/3 done (setWeight 50)",
     "lastTimestamp": at(1)},
]  # fmt: skip


def with_status(md: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(md)
    out["status"].update(changes)
    return out


def decided(md: dict[str, Any], promoted: str, reason: str, message: str = "done") -> dict[str, Any]:
    out = copy.deepcopy(md)
    out["status"]["conditions"] = [cond("Promoted", promoted, reason, message)]
    return out


# --- intents -------------------------------------------------------------------------------------


def test_intent_patch_clears_other_actions() -> None:
    body = intent_patch("promote", "full")
    intent = body["spec"]["intent"]
    assert (intent["promote"], intent["abort"], intent["undo"]) == ("full", None, None)
    assert len(intent["id"]) == 12
    assert intent_patch("abort", True)["spec"]["intent"]["id"] != intent["id"]


def test_undo_picks_latest_kept_or_named_version() -> None:
    md = with_status(MD, history=[{"revision": 2, "version": "1"}, {"revision": 1, "version": "0"}])
    assert undo_target(md, None, None) == "1"
    assert undo_target(md, "0", None) == "0"
    assert undo_target(md, None, 1) == "0"
    with pytest.raises(PluginError, match="version 9 is not kept"):
        undo_target(md, "9", None)
    with pytest.raises(PluginError, match="no revision 7"):
        undo_target(md, None, 7)
    with pytest.raises(PluginError, match="nothing to undo"):
        undo_target(with_status(MD, history=[]), None, None)
    body = undo_patch("1")
    assert body["spec"]["model"] == {"version": "1", "alias": None}
    assert body["spec"]["intent"]["undo"] == {"version": "1"}


# --- snapshot and views --------------------------------------------------------------------------


def test_snapshot_orders_revisions_and_matches_pods_by_revision_labels() -> None:
    snap = snapshot(MD, DEPLOYMENTS, PODS, EVENTS)
    assert [(r.track, r.version, r.ready, r.replicas) for r in snap.revisions] == [
        ("stable", "2", 1, 1),
        ("canary", "3", 1, 1),
        ("retired", "1", 0, 0),
    ]
    canary = snap.revision("canary")
    assert canary is not None
    assert [p.name for p in canary.pods] == ["churn-v3-aa-y1", "churn-v3-aa-y2"]
    assert [p.status for p in canary.pods] == ["Running", "ContainerCreating"]
    assert canary.restarts == 1
    assert snap.revisions[2].history_revision == 1
    assert snap.step == "2/3 analysis"
    assert [e.reason for e in snap.events] == ["GatePassed", "CanaryStarted", "StepCompleted"]  # by time
    assert snap.outcome is None


def test_a_canary_in_status_but_not_created_yet_is_shown_and_a_leftover_deployment_is_draining() -> None:
    snap = snapshot(MD, [DEPLOYMENTS[2], deployment("churn-v0-aa", "0", "canary", 1, 1, 50)], [], [])
    assert [(r.deployment, r.track, r.version, r.created is None) for r in snap.revisions] == [
        ("churn-v2-aa", "stable", "2", False),
        ("churn-v3-aa", "canary", "3", True),
        ("churn-v1-aa", "retired", "1", True),
        ("churn-v0-aa", "draining", "0", False),
    ]


def test_status_frame_shows_tracks_weight_step_analysis_conditions_and_events() -> None:
    text = frame(snapshot(MD, DEPLOYMENTS, PODS, EVENTS), NOW)
    assert "Phase:      Progressing: step 2/3: waiting for canary analysis" in text
    assert "Step:       2/3 analysis" in text
    assert "Weight:     50% to the canary" in text
    assert "generation 5, observed 5" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()}
    assert rows["stable"][:5] == ["stable", "2", "1/1", "0", "0.9100"]
    assert rows["canary"][:5] == ["canary", "3", "1/1", "1", "0.9300"]
    assert rows["kept"][:3] == ["kept", "#1", "1"]
    assert rows["errorRate"] == ["errorRate", "0.000", "<=", "0.050", "189", "Passed"]
    assert rows["liveF1"] == ["liveF1", "0.986", ">=", "0.900", "181", "Passed"]
    assert "Analysis:   Passed (Proceed) for canary 3 at 2026-01-01T12:09:30Z" in text
    assert rows["Promoted"][:3] == ["Promoted", "Unknown", "Progressing"]
    assert re.search(r"^1m\s+Normal\s+StepCompleted\s+step 1/3 done", text, re.M), text


def test_status_of_a_fresh_object_has_no_status_yet() -> None:
    fresh = {"metadata": {"name": "new", "namespace": "ml", "generation": 1}, "spec": MD["spec"]}
    text = frame(snapshot(fresh), NOW)
    assert "Phase:      Pending" in text
    assert "observed -" in text


def test_router_and_header_route_lines() -> None:
    md = with_status(
        MD,
        route={"kind": "HTTPRoute", "name": "churn", "weight": 5, "ready": True},
        headerRoute=[{"name": "X-Canary", "value": "always", "type": "Exact"}],
    )
    text = frame(snapshot(md), NOW)
    assert "Router:     HTTPRoute churn: canary weight in the route 5%, served" in text
    assert "Headers:    requests with X-Canary Exact 'always' go to the canary" in text
    assert "router HTTPRoute churn: canary weight in the route 5%, served" in progress_lines(snapshot(md))


def test_nginx_router_line_names_both_ingresses_and_the_applied_weight() -> None:
    md = with_status(
        MD,
        route={"kind": "Ingress", "name": "web", "weight": 25, "ready": True},
        headerRoute=[{"name": "X-Canary", "value": "always", "type": "Exact"}],
    )
    name = MD["metadata"]["name"]
    text = frame(snapshot(md), NOW)
    assert f"Router:     Ingress web + canary Ingress {name}-canary: canary-weight 25%, served" in text
    assert "Headers:    requests with X-Canary Exact 'always' go to the canary" in text
    held = with_status(
        MD,
        route={"kind": "Ingress", "name": "web", "weight": 0, "ready": False, "reason": "IngressNotServed",
               "message": "Ingress web is not served by any Ingress controller"},
    )  # fmt: skip
    assert "canary-weight 0%, not served (IngressNotServed: Ingress web is not served" in frame(
        snapshot(held), NOW
    )


def test_tree_nests_pods_under_their_revision() -> None:
    text = tree(snapshot(MD, DEPLOYMENTS, PODS, EVENTS), NOW)
    lines = text.splitlines()
    assert (
        lines[0] == "churn: Progressing: step 2/3: waiting for canary analysis; step 2/3 analysis, weight 50%"
    )
    body = [line.split() for line in lines[2:]]
    assert body[0] == ["NAME", "KIND", "TRACK", "VERSION", "READY", "RESTARTS", "STATUS", "AGE"]
    assert body[1][:3] == ["churn", "ModelDeployment", "3"]
    assert body[2] == ["├──", "churn-v2-aa", "Deployment", "stable", "2", "1/1", "0", "Ready", "20m"]
    assert body[3] == ["│", "└──", "churn-v2-aa-x1", "Pod", "1/1", "0", "Running", "2m"]
    assert body[4][:5] == ["├──", "churn-v3-aa", "Deployment", "canary", "3"]
    assert body[5][:3] == ["│", "├──", "churn-v3-aa-y1"]
    assert body[6] == ["│", "└──", "churn-v3-aa-y2", "Pod", "0/1", "0", "ContainerCreating", "2m"]
    assert body[7] == ["└──", "churn-v1-aa", "Deployment", "kept", "#1", "1", "0/0", "0", "ScaledDown", "40m"]


def test_history_table_and_data() -> None:
    text = history(MD).splitlines()
    assert text[0].split() == ["REVISION", "VERSION", "GATE", "STATE", "SINCE", "MODEL", "URI"]
    assert text[1].split() == ["current", "2", "0.9100", "stable", "-", "models:/churn/2"]
    assert text[2].split() == ["1", "1", "0.9000", "kept", "(0", "replicas)", at(30), "models:/churn/1"]
    assert [h["version"] for h in history_entries(MD)] == ["2", "1"]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_output_formats_carry_the_same_data(fmt: str) -> None:
    data = to_data(snapshot(MD, DEPLOYMENTS, PODS, EVENTS))
    text = render_data(data, fmt)
    back = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert back == data
    assert back["revisions"][1]["track"] == "canary"
    assert back["revisions"][1]["restarts"] == 1
    assert back["revisions"][1]["pods"][1]["status"] == "ContainerCreating"
    assert back["analysis"]["metrics"][0] == {
        "name": "errorRate", "value": 0.0, "threshold": 0.05, "direction": "<=", "samples": 189,
        "verdict": "Passed", "reason": "",
    }  # fmt: skip
    assert back["observedGeneration"] == 5
    assert back["conditions"][0]["type"] == "Promoted"
    streamed = render_data(data, fmt, stream=True)
    assert streamed.count("\n") == 1 if fmt == "json" else streamed.startswith("---\n")


def test_piped_lines_repeat_a_fact_only_when_it_changes_and_each_event_once() -> None:
    log = LineLog()
    first = log.update(snapshot(MD, DEPLOYMENTS, PODS, EVENTS))
    assert first[:3] == [
        "phase Progressing: step 2/3: waiting for canary analysis",
        "step 2/3 analysis, weight 50%",
        "pods stable v2 1/1, canary v3 1/1",
    ]
    assert first[3].startswith(
        "analysis Passed (Proceed) for canary 3: errorRate 0.000 <= 0.050 (189 samples)"
    )
    assert first[4:] == [
        "event Normal GatePassed: f1_score 0.93 >= 0.85",
        "event Normal CanaryStarted: version 3 starts as canary",
        "event Normal StepCompleted: step 1/3 done (setWeight 50)",
    ]
    assert log.update(snapshot(MD, DEPLOYMENTS, PODS, EVENTS)) == []
    # Rolled back: the canary is no longer in status, its Deployment still has its pod (draining).
    later = with_status(MD, phase="RolledBack", message="aborted", canary=None, weight=0, lastAnalysis=None)
    new_event = {"type": "Warning", "reason": "RolledBack", "message": "Aborted", "lastTimestamp": at(0)}
    assert log.update(snapshot(later, DEPLOYMENTS, PODS, [*EVENTS, new_event])) == [
        "phase RolledBack: aborted",
        "step -, weight 0%",
        "pods stable v2 1/1, draining v3 1/1",
        "event Warning RolledBack: Aborted",
    ]


# --- the decision and --watch --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("md", "want"),
    [
        (MD, None),
        (decided(MD, "True", "RolloutComplete"), "promoted"),
        (decided(MD, "False", "RolledBack"), "failed"),
        # A decision about an earlier generation is not about this spec (the operator has not seen it).
        ({**decided(MD, "True", "RolloutComplete"), "metadata": {**MD["metadata"], "generation": 6}}, None),
        # An operator without the Promoted condition: the phase decides.
        (with_status(MD, conditions=[], phase="Promoted", canary=None), "promoted"),
        (with_status(MD, conditions=[], phase="RolledBack", canary=None), "failed"),
        (with_status(MD, conditions=[], phase="Promoted"), None),
    ],
)
def test_outcome_of_reads_promoted_for_the_current_generation(md: dict[str, Any], want: str | None) -> None:
    got = outcome_of(md)
    assert (got[0] if got else None) == want


class Replay(Kubectl):
    """Plays back a sequence of ModelDeployment states, one per poll (the last one repeats)."""

    def __init__(self, states: list[dict[str, Any] | Exception]) -> None:
        super().__init__()
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "polls", 0)

    def md(self, name: str) -> dict[str, Any]:
        states: list[dict[str, Any] | Exception] = self.states  # type: ignore[attr-defined]
        state = states[min(self.polls, len(states) - 1)]  # type: ignore[attr-defined]
        object.__setattr__(self, "polls", self.polls + 1)  # type: ignore[attr-defined]
        if isinstance(state, Exception):
            raise state
        return state

    def children(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return DEPLOYMENTS, PODS

    def events(self, name: str) -> list[dict[str, Any]]:
        return EVENTS


def watch(
    states: list[dict[str, Any] | Exception], timeout: float = 0, tty: bool = False
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    code = Watch(
        Replay(states), "churn", timeout=timeout, interval=2, out=out, err=err, tty=tty,
        clock=lambda: clock[0], sleep=sleep, now=lambda: NOW,
    ).run()  # fmt: skip
    return code, out.getvalue(), err.getvalue()


def test_watch_exits_0_when_promoted() -> None:
    code, out, err = watch([MD, MD, decided(MD, "True", "RolloutComplete", "version 3 is stable")])
    assert code == EXIT_PROMOTED
    assert out.splitlines()[-1] == "modeldeployment/churn promoted: version 3 is stable"
    assert out.count("phase Progressing") == 1  # printed once, not once per poll
    assert err == ""


def test_watch_exits_3_when_rolled_back_and_says_why() -> None:
    code, _, err = watch([MD, decided(MD, "False", "RolledBack", "errorRate 0.99 > 0.05")])
    assert code == EXIT_NOT_PROMOTED
    assert err.strip() == "error: modeldeployment/churn was not promoted (RolledBack): errorRate 0.99 > 0.05"


def test_watch_times_out_with_exit_4_and_the_phase() -> None:
    code, _, err = watch([MD], timeout=7)
    assert code == EXIT_TIMEOUT
    assert "error: timed out after 7s waiting for modeldeployment/churn (phase Progressing:" in err


def test_watch_survives_an_api_hiccup_but_not_a_deleted_object() -> None:
    code, _, err = watch([MD, PluginError("connection refused"), decided(MD, "True", "RolloutComplete")])
    assert code == EXIT_PROMOTED
    assert "warning: connection refused (retrying)" in err
    code, _, err = watch([MD, NotFound('modeldeployments.mlrollout.io "churn" not found')])
    assert code == EXIT_ERROR
    assert 'error: modeldeployments.mlrollout.io "churn" not found' in err


def test_watch_on_a_terminal_redraws_the_frame_in_place() -> None:
    code, out, _ = watch([MD, decided(MD, "True", "RolloutComplete", "version 3 is stable")], tty=True)
    assert code == EXIT_PROMOTED
    assert out.count("\x1b[H\x1b[J") == 2
    assert "Weight:     50% to the canary" in out


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("0", 0)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "m5", "1h 2m"])
def test_parse_duration_refuses_what_kubectl_would(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_usage_errors_exit_2_and_help_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    assert main(["status", "x", "-o", "toml"]) == 2
    assert main(["status", "x", "--timeout", "soon"]) == 2
    assert main(["--help"]) == 0
    assert "exit codes of `status --watch`" in capsys.readouterr().out


def test_global_options_before_or_after_the_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["-n", "ml", "status", "x"]).namespace == "ml"
    assert parser.parse_args(["status", "x", "-n", "ml", "--context", "c"]).namespace == "ml"
    assert parser.parse_args(["--context", "c", "get", "x"]).context == "c"


# --- completion and the subcommand table ---------------------------------------------------------


def names(k: Kubectl) -> list[str]:
    return ["churn", "fraud"] if k.namespace in (None, "ml") else []


def spaces(k: Kubectl) -> list[str]:
    return ["default", "ml"]


@pytest.mark.parametrize(
    ("words", "want"),
    [
        (
            [""],
            ["status", "get", "history", "promote", "abort", "pause", "resume", "undo", "completion", "diff"],
        ),
        (["st"], ["status"]),
        (["status", ""], ["churn", "fraud"]),
        (["status", "f"], ["fraud"]),
        (["-n", "other", "get", ""], []),
        (["get", "-n", ""], ["default", "ml"]),
        (["status", "churn", "-o", ""], ["json", "yaml"]),
        (["status", "churn", "--w"], ["--watch"]),
        (["undo", "churn", "--to-"], ["--to-revision", "--to-version"]),
        (["completion", ""], ["bash", "zsh"]),
        (["status", "churn", ""], []),
        (["promote", "churn", "--"], ["--context", "--full", "--help", "--kubeconfig", "--namespace"]),
    ],
)
def test_completion(words: list[str], want: list[str]) -> None:
    got, directive = complete(words, names=names, namespaces=spaces)
    assert got == want
    assert directive == NO_FILES


def test_completion_scripts_ask_the_plugin_itself(capsys: pytest.CaptureFixture[str]) -> None:
    assert 'kubectl-mlrollout __complete "${COMP_WORDS[@]:1:COMP_CWORD}"' in script("bash")
    assert "complete -F _kubectl_mlrollout kubectl-mlrollout" in script("bash")
    assert script("zsh").startswith("#compdef kubectl-mlrollout")
    # The words are data, not options: `-n` among them is not the plugin's own --namespace.
    assert main(["__complete", "-o", "json", "com"]) == 0
    assert capsys.readouterr().out == "completion\n:4\n"


def test_a_registered_subcommand_gets_options_help_and_completion(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[argparse.Namespace] = []

    def run(args: argparse.Namespace, k: Kubectl) -> int:
        seen.append(args)
        return 0

    register(
        "diff-test", Command("compare two revisions", run, lambda p: p.add_argument("--against"), reads=True)
    )
    try:
        assert main(["diff-test", "churn", "--against", "2", "-o", "yaml", "-n", "ml"]) == 0
        assert (seen[0].name, seen[0].against, seen[0].output, seen[0].namespace) == (
            "churn",
            "2",
            "yaml",
            "ml",
        )
        assert complete(["diff-test", "--ag"])[0] == ["--against"]
        with pytest.raises(ValueError, match="already registered"):
            register("diff-test", COMMANDS["diff-test"])
    finally:
        del COMMANDS["diff-test"]


def test_events_of_one_second_keep_the_order_the_api_server_stored_them() -> None:
    same = at(1)
    raw = [
        {"reason": "Promoted", "lastTimestamp": same, "metadata": {"resourceVersion": "120"}},
        {"reason": "StepCompleted", "lastTimestamp": same, "metadata": {"resourceVersion": "99"}},
        {"reason": "Available", "lastTimestamp": same, "metadata": {"resourceVersion": "121"}},
        {"reason": "CanaryStarted", "lastTimestamp": at(2), "metadata": {"resourceVersion": "500"}},
    ]
    assert [e.reason for e in snapshot(MD, events=raw).events] == [
        "CanaryStarted",
        "StepCompleted",
        "Promoted",
        "Available",
    ]


def test_kubectl_errors_lose_client_go_log_lines() -> None:
    from mlrollout.operator.plugin.kubectl import kubectl_error

    noisy = (
        'E1201 23:39:26.779236   16040 memcache.go:265] "Unhandled Error" err="couldn\'t get ..."\n'
        'E1201 23:39:26.781035   16040 memcache.go:265] "Unhandled Error" err="couldn\'t get ..."\n'
        "The connection to the server localhost:8080 was refused - did you specify the right host or port?\n"
    )
    assert kubectl_error(noisy) == (
        "The connection to the server localhost:8080 was refused - did you specify the right host or port?"
    )
    only_logs = 'E1201 23:39:26.779236   16040 x.go:1] "a"\nE1201 23:39:27.000001   16040 x.go:1] "b"\n'
    assert kubectl_error(only_logs) == 'E1201 23:39:27.000001   16040 x.go:1] "b"'
    assert kubectl_error('Error from server (NotFound): md "x" not found\n') == (
        'Error from server (NotFound): md "x" not found'
    )


def test_the_terminal_view_is_cut_to_the_terminal() -> None:
    from mlrollout.operator.plugin.watch import fit

    assert fit("short\n" + "x" * 30 + "\nthird\nfourth", (20, 3)) == "short\n" + "x" * 18 + "…"
    assert fit("a\nb", (80, 24)) == "a\nb"


def test_kubectl_itself_completes_the_plugin(tmp_path: Any) -> None:
    """kubectl (1.26+) finds kubectl_complete-mlrollout on PATH and relays its candidates."""
    import os
    import shutil
    import subprocess
    import sys

    from support.ci import unavailable

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable("kubectl is not on PATH")
    bin_dir = os.path.dirname(sys.executable)  # where the console scripts of this install are
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(tmp_path / "none"),
    }
    out = subprocess.run(
        [kubectl, "__complete", "mlrollout", "status", "x", "-o", ""],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    ).stdout  # fmt: skip
    assert out.splitlines() == ["json", "yaml", ":4"], out
