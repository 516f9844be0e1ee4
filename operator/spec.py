"""The ModelDeployment spec as typed, validated values.

The CRD schema rejects most bad input at `kubectl apply`; this parser is the second line for
objects that bypassed it (older CRD, direct etcd writes) and gives the planner typed values.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlrollout.operator.model import HeaderMatch

GROUP = "mlrollout.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"

_DURATION = re.compile(r"^([0-9]{1,6})(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")  # MLflow: not "latest", not like "v12"

DEFAULT_STEPS: tuple[Mapping[str, Any], ...] = (
    {"setWeight": 10},
    {"pause": {"duration": "60s"}},
    {"setWeight": 50},
    {"pause": {"duration": "60s"}},
    {"setWeight": 100},
)


class InvalidSpec(ValueError):
    """The spec cannot be acted on; the message names the offending field."""


def parse_duration(text: str, field_name: str) -> int:
    """`90s`, `5m`, `1h` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidSpec(f"{field_name}: {text!r} is not a duration like 60s, 5m or 1h")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def request(self) -> str:
        """What the user asked for, as a stable string (used to notice spec changes)."""
        return f"{self.name}@{self.version}" if self.version else f"{self.name}@alias:{self.alias}"


GateDirection = Literal["higherIsBetter", "lowerIsBetter"]
GATE_DIRECTIONS: tuple[GateDirection, ...] = ("higherIsBetter", "lowerIsBetter")


@dataclass(frozen=True)
class Gate:
    """The offline gate on a metric of the version's source run. `higherIsBetter` (F1, accuracy):
    threshold is a floor and maxRegression the largest drop below stable; `lowerIsBetter` (RMSE,
    log loss): threshold is a ceiling and maxRegression the largest rise above stable."""

    metric: str = "f1_score"
    threshold: float = 0.0
    max_regression: float | None = None
    direction: GateDirection = "higherIsBetter"

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lowerIsBetter"


@dataclass(frozen=True)
class EnvVar:
    """One container variable: a literal `value`, or `value_from` (a core/v1 EnvVarSource)."""

    name: str
    value: str = ""
    value_from: Mapping[str, Any] | None = None

    def manifest(self) -> dict[str, Any]:
        if self.value_from is not None:
            return {"name": self.name, "valueFrom": dict(self.value_from)}
        return {"name": self.name, "value": self.value}

    def hash_doc(self) -> list[Any]:
        # [name, value] is what the hash has always held for literal values: keep it.
        return [self.name, self.value if self.value_from is None else {"valueFrom": self.value_from}]


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: str = "key"


DEFAULT_STARTUP_TIMEOUT_SECONDS = 600
DEFAULT_DRAIN_SECONDS = 5
DEFAULT_GRACEFUL_TIMEOUT_SECONDS = 20  # serving's MLROLLOUT_GRACEFUL_TIMEOUT default (gunicorn_config)
MIN_STARTUP_TIMEOUT_SECONDS = 10
MAX_STARTUP_TIMEOUT_SECONDS = 3600
MAX_DRAIN_SECONDS = 120


@dataclass(frozen=True)
class Serving:
    image: str
    replicas: int = 2
    port: int = 8080
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    env: tuple[EnvVar, ...] = ()
    auth_secret: str | None = None
    env_from: tuple[Mapping[str, Any], ...] = ()
    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class: str | None = None
    startup_timeout_seconds: int = DEFAULT_STARTUP_TIMEOUT_SECONDS
    drain_seconds: int = DEFAULT_DRAIN_SECONDS
    feedback_key: SecretKey | None = None

    def env_value(self, name: str) -> str | None:
        """The literal value the user set for `name` (None if unset or from a reference)."""
        for var in reversed(self.env):  # the last duplicate wins in a container
            if var.name == name:
                return var.value if var.value_from is None else None
        return None

    def sets_env(self, name: str) -> bool:
        return any(var.name == name for var in self.env)

    @property
    def graceful_timeout_seconds(self) -> int:
        """How long gunicorn lets in-flight requests finish after SIGTERM (MLROLLOUT_GRACEFUL_TIMEOUT)."""
        raw = self.env_value("MLROLLOUT_GRACEFUL_TIMEOUT")
        return int(raw) if raw and raw.strip().isdigit() else DEFAULT_GRACEFUL_TIMEOUT_SECONDS

    @property
    def template_hash(self) -> str:
        """Identity of the pod template (replicas excluded): a change means a new revision.

        Fields added after v0.1 enter the hash only when they differ from their defaults, so an
        existing ModelDeployment keeps its hash (and its Deployments) across an operator upgrade."""
        doc: list[Any] = [
            self.image,
            self.port,
            self.resources,
            self.node_selector,
            [v.hash_doc() for v in self.env],
            self.auth_secret,
        ]
        later = {
            "envFrom": list(self.env_from),
            "imagePullPolicy": self.image_pull_policy,
            "imagePullSecrets": list(self.image_pull_secrets),
            "serviceAccountName": self.service_account,
            "tolerations": list(self.tolerations),
            "affinity": self.affinity,
            "priorityClassName": self.priority_class,
            "startupTimeoutSeconds": (
                self.startup_timeout_seconds
                if self.startup_timeout_seconds != DEFAULT_STARTUP_TIMEOUT_SECONDS
                else None
            ),
            "drainSeconds": self.drain_seconds if self.drain_seconds != DEFAULT_DRAIN_SECONDS else None,
            "feedbackKey": [self.feedback_key.name, self.feedback_key.key] if self.feedback_key else None,
        }
        changed = {k: v for k, v in later.items() if v not in (None, [], {})}
        if changed:
            doc.append(changed)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:6]


@dataclass(frozen=True)
class SetWeight:
    weight: int


@dataclass(frozen=True)
class Pause:
    seconds: int | None  # None: until promoted


@dataclass(frozen=True)
class Analysis:
    pass


@dataclass(frozen=True)
class SetHeaderRoute:
    """Requests matching every header go to the canary whatever the weight (gatewayAPI router);
    no headers clears the rule. Promotion, abort and rollback clear it too."""

    headers: tuple[HeaderMatch, ...]


@dataclass(frozen=True)
class Shadow:
    """The canary's pods answer a sampled copy of live scoring requests and serve no user; the
    stable pods compare both answers (serving/shadow.py). Only before the canary serves anyone."""

    seconds: int
    percent: int = 100  # share of scoring requests copied
    tolerance: float = 1e-6  # relative, for numeric predictions
    timeout_ms: int = 1000  # per socket operation of a copy
    record_inputs: bool = False  # the disagreement sample keeps input rows (may be personal data)


Step = SetWeight | Pause | Analysis | SetHeaderRoute | Shadow


@dataclass(frozen=True)
class ReplicasRoute:
    """No proxy: the share of traffic is the share of Ready pods behind the one Service."""


# Argo Rollouts' abortScaleDownDelaySeconds default: proxies (Traefik's provider throttle, Envoy's
# xDS push) apply a route change some seconds after the Gateway reports it.
SCALE_DOWN_DELAY_SECONDS = 30


@dataclass(frozen=True)
class GatewayAPIRoute:
    """Weights and header rules in the user's HTTPRoute `http_route` (same namespace)."""

    http_route: str
    canary_replicas: int | None = None  # canary pods whatever the weight; None: its share of replicas
    scale_down_delay_seconds: int = 30  # pods that left the route keep running this long (proxies lag)


@dataclass(frozen=True)
class NginxRoute:
    """A canary Ingress with the NGINX canary annotations beside the user's Ingress `ingress`."""

    ingress: str
    canary_replicas: int | None = None  # canary pods whatever the weight; None: its share of replicas
    scale_down_delay_seconds: int = 30  # pods that left the route keep running this long (proxies lag)


RouterSpec = ReplicasRoute | GatewayAPIRoute | NginxRoute
# Routers whose traffic share is set by a proxy, not by pod counts: each track has its own Service.
PROXY_ROUTES = (GatewayAPIRoute, NginxRoute)


@dataclass(frozen=True)
class Intent:
    id: str
    promote: Literal["step", "full"] | None = None
    abort: bool = False
    undo_version: str | None = None


@dataclass(frozen=True)
class Spec:
    model: ModelRef
    serving: Serving
    gate: Gate = Gate()
    tracking_uri: str | None = None
    steps: tuple[Step, ...] = (SetWeight(10), Pause(60), SetWeight(50), Pause(60), SetWeight(100))
    progress_deadline_seconds: int = 600
    paused: bool = False
    history_limit: int = 3
    intent: Intent | None = None
    analysis: Mapping[str, Any] | None = None  # spec.rollout.analysis, parsed by mlrollout.operator.analysis
    promote_alias: str | None = None  # spec.rollout.promoteAlias: MLflow alias moved to each promoted version
    router: RouterSpec = ReplicasRoute()


def _obj(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _int(value: Any, name: str, lo: int, hi: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidSpec(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    return value


def _gate(raw: Mapping[str, Any]) -> Gate:
    direction = raw.get("direction", "higherIsBetter")
    if direction not in GATE_DIRECTIONS:
        raise InvalidSpec(
            f"spec.gate.direction: expected one of {', '.join(GATE_DIRECTIONS)}, got {direction!r}"
        )
    # Scores that rise with quality (F1, accuracy, AUC) live in [0, 1]; errors (RMSE, MAE, log loss)
    # are in the target's unit, so only their sign is checked.
    number = _nonnegative if direction == "lowerIsBetter" else _unit
    if direction == "lowerIsBetter" and not raw.get("threshold"):
        # The default floor of 0 means "no gate" for a score; as a ceiling it would refuse everything.
        raise InvalidSpec("spec.gate.threshold: a lowerIsBetter gate needs the highest allowed value (> 0)")
    max_regression = raw.get("maxRegression")
    return Gate(
        metric=_str(raw.get("metric"), "spec.gate.metric") or "f1_score",
        threshold=number(raw.get("threshold", 0), "spec.gate.threshold"),
        max_regression=None if max_regression is None else number(max_regression, "spec.gate.maxRegression"),
        direction=direction,
    )


def _nonnegative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise InvalidSpec(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _unit(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidSpec(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _str(value: Any, name: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidSpec(f"{name}: required")
        return None
    if not isinstance(value, str) or not value:
        raise InvalidSpec(f"{name}: expected a non-empty string, got {value!r}")
    return value


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_SOURCES = ("secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef")
# Set by the operator from the spec (the model it pins, spec.serving.feedbackKey): never by env.
_RESERVED_ENV_PREFIX = "MLROLLOUT_MODEL_"


def _parse_env(raw: Any) -> tuple[EnvVar, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidSpec("spec.serving.env: expected a list")
    env: list[EnvVar] = []
    for i, item in enumerate(raw):
        name = f"spec.serving.env[{i}]"
        entry = _obj(item, name)
        env_name = _str(entry.get("name"), f"{name}.name", required=True)
        assert env_name is not None
        if env_name.startswith(_RESERVED_ENV_PREFIX):
            raise InvalidSpec(f"{name}.name: MLROLLOUT_MODEL_* variables are set by the operator")
        if "valueFrom" in entry:
            if "value" in entry:
                raise InvalidSpec(f"{name}: set value or valueFrom, not both")
            source = _obj(entry["valueFrom"], f"{name}.valueFrom")
            kinds = [k for k in _ENV_SOURCES if k in source]
            if len(kinds) != 1 or len(source) != 1:
                raise InvalidSpec(f"{name}.valueFrom: set exactly one of {', '.join(_ENV_SOURCES)}")
            _obj(source[kinds[0]], f"{name}.valueFrom.{kinds[0]}")
            env.append(EnvVar(env_name, value_from=dict(source)))
            continue
        value = str(entry.get("value", ""))
        if env_name == "MLROLLOUT_GRACEFUL_TIMEOUT" and not (value.isdigit() and int(value) >= 1):
            raise InvalidSpec(f"{name}.value: MLROLLOUT_GRACEFUL_TIMEOUT must be whole seconds >= 1")
        env.append(EnvVar(env_name, value))
    return tuple(env)


def _parse_env_from(raw: Any) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for i, entry in enumerate(_objects(raw, "spec.serving.envFrom")):
        kinds = [k for k in ("secretRef", "configMapRef") if k in entry]
        if len(kinds) != 1:
            raise InvalidSpec(f"spec.serving.envFrom[{i}]: set exactly one of secretRef or configMapRef")
        ref = _obj(entry[kinds[0]], f"spec.serving.envFrom[{i}].{kinds[0]}")
        _str(ref.get("name"), f"spec.serving.envFrom[{i}].{kinds[0]}.name", required=True)
        out.append(dict(entry))
    return out


def _objects(raw: Any, name: str) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidSpec(f"{name}: expected a list")
    return [_obj(item, f"{name}[{i}]") for i, item in enumerate(raw)]


def _names(raw: Any, name: str) -> list[str]:
    """[{name: x}, ...] -> [x, ...] (imagePullSecrets)."""
    out: list[str] = []
    for i, item in enumerate(_objects(raw, name)):
        value = _str(item.get("name"), f"{name}[{i}].name", required=True)
        assert value is not None
        out.append(value)
    return out


def _parse_step(raw: Any, index: int) -> Step:
    name = f"spec.rollout.steps[{index}]"
    step = _obj(raw, name)
    kinds = [k for k in ("setWeight", "pause", "analysis", "setHeaderRoute", "shadow") if k in step]
    if len(kinds) != 1:
        raise InvalidSpec(f"{name}: set exactly one of setWeight, pause, analysis, setHeaderRoute or shadow")
    if kinds[0] == "shadow":
        return _parse_shadow(_obj(step["shadow"], f"{name}.shadow"), f"{name}.shadow")
    if kinds[0] == "setHeaderRoute":
        return SetHeaderRoute(_parse_headers(step["setHeaderRoute"], f"{name}.setHeaderRoute"))
    if kinds[0] == "setWeight":
        return SetWeight(_int(step["setWeight"], f"{name}.setWeight", 0, 100, 0))
    if kinds[0] == "pause":
        duration = _str(_obj(step["pause"], f"{name}.pause").get("duration"), f"{name}.pause.duration")
        return Pause(parse_duration(duration, f"{name}.pause.duration") if duration else None)
    return Analysis()


def _parse_shadow(body: Mapping[str, Any], name: str) -> Shadow:
    duration = _str(body.get("duration"), f"{name}.duration", required=True)
    assert duration is not None
    tolerance = body.get("tolerance", 1e-6)
    if type(tolerance) not in (int, float) or not 0 <= tolerance <= 1:
        raise InvalidSpec(f"{name}.tolerance: a relative tolerance in [0, 1], got {tolerance!r}")
    record = body.get("recordInputs", False)
    if not isinstance(record, bool):
        raise InvalidSpec(f"{name}.recordInputs: expected true or false, got {record!r}")
    return Shadow(
        seconds=parse_duration(duration, f"{name}.duration"),
        percent=_int(body.get("percent"), f"{name}.percent", 1, 100, 100),
        tolerance=float(tolerance),
        timeout_ms=_int(body.get("timeoutMs"), f"{name}.timeoutMs", 1, 60000, 1000),
        record_inputs=record,
    )


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")  # an RFC 7230 token, as Gateway API


def _parse_headers(raw: Any, name: str) -> tuple[HeaderMatch, ...]:
    body = _obj(raw, name)
    out: list[HeaderMatch] = []
    for i, item in enumerate(_objects(body.get("headers") or [], f"{name}.headers")):
        where = f"{name}.headers[{i}]"
        header = _str(item.get("name"), f"{where}.name", required=True) or ""
        if not _HEADER_NAME.match(header):
            raise InvalidSpec(f"{where}.name: {header!r} is not an HTTP header name")
        value = _str(item.get("value"), f"{where}.value", required=True) or ""
        kind = item.get("type", "Exact")
        if kind not in ("Exact", "RegularExpression"):
            raise InvalidSpec(f"{where}.type: expected Exact or RegularExpression, got {kind!r}")
        if kind == "RegularExpression":
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidSpec(f"{where}.value: not a regular expression ({exc})") from None
        out.append(HeaderMatch(header, value, kind))
    if len({h.name.lower() for h in out}) != len(out):
        raise InvalidSpec(f"{name}.headers: each header name at most once")
    return tuple(out)


_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _parse_router(raw: Any) -> RouterSpec:
    router = _obj(raw, "spec.rollout.trafficRouter") or {"replicas": {}}
    if len(router) != 1 or set(router) - {"replicas", "gatewayAPI", "nginx"}:
        raise InvalidSpec(
            f"spec.rollout.trafficRouter: set exactly one router, got {sorted(router)} "
            "(supported: replicas, gatewayAPI, nginx)"
        )
    if "replicas" in router:
        _obj(router["replicas"], "spec.rollout.trafficRouter.replicas")
        return ReplicasRoute()
    kind, field_name = ("gatewayAPI", "httpRoute") if "gatewayAPI" in router else ("nginx", "ingress")
    where = f"spec.rollout.trafficRouter.{kind}"
    body = _obj(router[kind], where)
    target = _str(body.get(field_name), f"{where}.{field_name}", required=True) or ""
    if len(target) > 253 or not _DNS_NAME.match(target):
        raise InvalidSpec(f"{where}.{field_name}: {target!r} is not an object name")
    fixed = body.get("canaryReplicas")
    canary_replicas = None if fixed is None else _int(fixed, f"{where}.canaryReplicas", 1, 1000, 1)
    delay = _int(
        body.get("scaleDownDelaySeconds"), f"{where}.scaleDownDelaySeconds", 0, 3600, SCALE_DOWN_DELAY_SECONDS
    )
    if kind == "nginx":
        return NginxRoute(ingress=target, canary_replicas=canary_replicas, scale_down_delay_seconds=delay)
    return GatewayAPIRoute(http_route=target, canary_replicas=canary_replicas, scale_down_delay_seconds=delay)


def _parse_intent(raw: Any) -> Intent | None:
    if raw is None:
        return None
    intent = _obj(raw, "spec.intent")
    intent_id = _str(intent.get("id"), "spec.intent.id", required=True)
    assert intent_id is not None
    promote = intent.get("promote")
    if promote not in (None, "step", "full"):
        raise InvalidSpec(f"spec.intent.promote: expected step or full, got {promote!r}")
    undo = _obj(intent.get("undo"), "spec.intent.undo")
    undo_version = _str(undo.get("version"), "spec.intent.undo.version", required=bool(undo))
    actions = [promote is not None, bool(intent.get("abort")), undo_version is not None]
    if sum(actions) != 1:
        raise InvalidSpec("spec.intent: set exactly one of promote, abort or undo")
    return Intent(id=intent_id, promote=promote, abort=bool(intent.get("abort")), undo_version=undo_version)


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """Turn `.spec` into a Spec, or raise InvalidSpec naming the field."""
    model = _obj(raw.get("model"), "spec.model")
    name = _str(model.get("name"), "spec.model.name", required=True)
    version = _str(model.get("version"), "spec.model.version")
    alias = _str(model.get("alias"), "spec.model.alias")
    if (version is None) == (alias is None):
        raise InvalidSpec("spec.model: set exactly one of version or alias")
    if version is not None and not version.isdigit():
        raise InvalidSpec(f"spec.model.version: {version!r} is not a registry version number")
    assert name is not None

    gate = _gate(_obj(raw.get("gate"), "spec.gate"))

    srv = _obj(raw.get("serving"), "spec.serving")
    image = _str(srv.get("image"), "spec.serving.image", required=True)
    assert image is not None
    auth = _obj(srv.get("auth"), "spec.serving.auth")
    feedback_raw = _obj(srv.get("feedbackKey"), "spec.serving.feedbackKey")
    feedback = _obj(feedback_raw.get("secretKeyRef"), "spec.serving.feedbackKey.secretKeyRef")
    feedback_name = _str(
        feedback.get("name"), "spec.serving.feedbackKey.secretKeyRef.name", required=bool(feedback_raw)
    )
    env = _parse_env(srv.get("env"))
    if feedback_raw and any(v.name == "MLROLLOUT_FEEDBACK_KEY" for v in env):
        raise InvalidSpec("spec.serving.feedbackKey: MLROLLOUT_FEEDBACK_KEY is also set in spec.serving.env")
    pull_policy = srv.get("imagePullPolicy")
    if pull_policy not in (None, "Always", "IfNotPresent", "Never"):
        raise InvalidSpec(
            f"spec.serving.imagePullPolicy: expected Always, IfNotPresent or Never, got {pull_policy!r}"
        )
    serving = Serving(
        image=image,
        replicas=_int(srv.get("replicas"), "spec.serving.replicas", 1, 1000, 2),
        port=_int(srv.get("port"), "spec.serving.port", 1, 65535, 8080),
        resources=dict(_obj(srv.get("resources"), "spec.serving.resources")),
        node_selector={
            str(k): str(v) for k, v in _obj(srv.get("nodeSelector"), "spec.serving.nodeSelector").items()
        },
        env=env,
        auth_secret=_str(
            _obj(auth.get("secretRef"), "spec.serving.auth.secretRef").get("name"),
            "spec.serving.auth.secretRef.name",
            required=bool(auth),
        ),
        env_from=tuple(_parse_env_from(srv.get("envFrom"))),
        image_pull_policy=pull_policy,
        image_pull_secrets=tuple(_names(srv.get("imagePullSecrets"), "spec.serving.imagePullSecrets")),
        service_account=_str(srv.get("serviceAccountName"), "spec.serving.serviceAccountName"),
        tolerations=tuple(_objects(srv.get("tolerations"), "spec.serving.tolerations")),
        affinity=dict(_obj(srv.get("affinity"), "spec.serving.affinity")),
        priority_class=_str(srv.get("priorityClassName"), "spec.serving.priorityClassName"),
        startup_timeout_seconds=_int(
            srv.get("startupTimeoutSeconds"),
            "spec.serving.startupTimeoutSeconds",
            MIN_STARTUP_TIMEOUT_SECONDS,
            MAX_STARTUP_TIMEOUT_SECONDS,
            DEFAULT_STARTUP_TIMEOUT_SECONDS,
        ),
        drain_seconds=_int(
            srv.get("drainSeconds"), "spec.serving.drainSeconds", 0, MAX_DRAIN_SECONDS, DEFAULT_DRAIN_SECONDS
        ),
        feedback_key=(
            SecretKey(
                feedback_name, _str(feedback.get("key"), "spec.serving.feedbackKey.secretKeyRef.key") or "key"
            )
            if feedback_name
            else None
        ),
    )

    rollout = _obj(raw.get("rollout"), "spec.rollout")
    router = _parse_router(rollout.get("trafficRouter"))
    steps_raw = rollout.get("steps", list(DEFAULT_STEPS))
    if not isinstance(steps_raw, list) or not steps_raw:
        raise InvalidSpec("spec.rollout.steps: expected a non-empty list")
    steps = tuple(_parse_step(s, i) for i, s in enumerate(steps_raw))
    if not any(isinstance(s, SetWeight) and s.weight > 0 for s in steps):
        raise InvalidSpec("spec.rollout.steps: at least one setWeight step must be above 0")
    serving_from = next(
        (
            i
            for i, s in enumerate(steps)
            if (isinstance(s, SetWeight) and s.weight > 0) or isinstance(s, SetHeaderRoute)
        ),
        len(steps),
    )
    late = [i for i, s in enumerate(steps) if isinstance(s, Shadow) and i > serving_from]
    if late:
        raise InvalidSpec(
            f"spec.rollout.steps[{late[0]}].shadow comes after steps[{serving_from}] sends users to the "
            "canary; shadow steps go first, while the canary serves no one"
        )
    header_steps = [i for i, s in enumerate(steps) if isinstance(s, SetHeaderRoute)]
    if header_steps and not isinstance(router, PROXY_ROUTES):
        raise InvalidSpec(
            f"spec.rollout.steps[{header_steps[0]}].setHeaderRoute needs a router that routes by header "
            "(spec.rollout.trafficRouter.gatewayAPI or nginx); the replicas router splits by pod count only"
        )
    if isinstance(router, NginxRoute):
        for i in header_steps:
            step = steps[i]
            assert isinstance(step, SetHeaderRoute)
            if len(step.headers) > 1:
                raise InvalidSpec(
                    f"spec.rollout.steps[{i}].setHeaderRoute.headers: the nginx router matches one header "
                    "(nginx.ingress.kubernetes.io/canary-by-header), got "
                    f"{len(step.headers)}"
                )

    analysis = rollout.get("analysis")
    if analysis is not None and not isinstance(analysis, Mapping):
        raise InvalidSpec("spec.rollout.analysis: expected an object")
    if analysis is None and any(isinstance(s, Analysis) for s in steps):
        raise InvalidSpec("spec.rollout.analysis is required when a step is an analysis step")
    promote_alias = _str(rollout.get("promoteAlias"), "spec.rollout.promoteAlias")
    if promote_alias is not None and not _ALIAS.match(promote_alias):
        raise InvalidSpec(f"spec.rollout.promoteAlias: {promote_alias!r} is not an MLflow alias name")
    registry = _obj(raw.get("registry"), "spec.registry")
    paused = raw.get("paused", False)
    if not isinstance(paused, bool):
        raise InvalidSpec(f"spec.paused: expected true or false, got {paused!r}")
    # An undo intent whose version differs from spec.model.version is one already applied and then
    # followed by a new target (the CRD refuses a mismatch when the intent is written).
    intent = _parse_intent(raw.get("intent"))
    return Spec(
        model=ModelRef(name=name, version=version, alias=alias),
        serving=serving,
        gate=gate,
        tracking_uri=_str(registry.get("trackingUri"), "spec.registry.trackingUri"),
        steps=steps,
        progress_deadline_seconds=_int(
            rollout.get("progressDeadlineSeconds"), "spec.rollout.progressDeadlineSeconds", 5, 86400, 600
        ),
        paused=paused,
        history_limit=_int(raw.get("revisionHistoryLimit"), "spec.revisionHistoryLimit", 0, 20, 3),
        intent=intent,
        analysis=analysis,
        promote_alias=promote_alias,
        router=router,
    )
