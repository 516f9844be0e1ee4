"""Shadow steps: which pods answer the copies, and what the stable pods are told to mirror.

While the current step is a shadow step the canary version also runs as `<canary>-shadow`, a
Deployment whose pods no user-facing Service selects (children.py gives them their own app label);
the stable pods copy a sampled share of scoring requests to them through the `<md>-shadow`
Service. Leaving the step deletes them: they never served a user, so nothing can be dropped."""

from __future__ import annotations

from mlrollout.operator.model import Status
from mlrollout.operator.planner.work import DesiredDeployment, Work
from mlrollout.operator.spec import Shadow, Spec

SUFFIX = "-shadow"


def shadow_name(canary_deployment: str) -> str:
    return canary_deployment + SUFFIX


def current_shadow(spec: Spec, status: Status) -> Shadow | None:
    """The shadow step the canary is on, if any."""
    if status.canary is None:
        return None
    index = status.current_step_index or 0
    step = spec.steps[index] if index < len(spec.steps) else None
    return step if isinstance(step, Shadow) else None


def shadow_replicas(total: int, percent: int) -> int:
    """Enough pods for the copied share of the traffic the stable pods get: ceil(N * p / 100), >= 1."""
    return max(1, -(-total * percent // 100))


def with_shadow(
    w: Work, deployments: tuple[DesiredDeployment, ...], deletions: tuple[str, ...]
) -> tuple[tuple[DesiredDeployment, ...], tuple[str, ...]]:
    """The pass' Deployments with the shadow one added during a shadow step; outside one, an
    observed shadow Deployment is deleted at once (its pods serve no user)."""
    step = current_shadow(w.spec, w.status)
    kept = tuple(d for d in deployments if not d.name.endswith(SUFFIX))
    gone = [n for n in deletions if not n.endswith(SUFFIX)]
    canary = w.status.canary
    want: str | None = None
    if step is not None and canary is not None:
        want = shadow_name(canary.deployment)
        replicas = shadow_replicas(w.spec.serving.replicas, step.percent)
        kept += (
            DesiredDeployment(
                want, canary.version, canary.model_uri, replicas, "canary", canary.serving_hash, shadow=True
            ),
        )
    gone += sorted(n for n in w.obs.deployments if n.endswith(SUFFIX) and n != want)
    return kept, tuple(gone)
