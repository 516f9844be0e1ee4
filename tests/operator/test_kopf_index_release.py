"""kopf's index readiness on a standby replica: a watcher stopped before its first listing (its
namespace deleted while the peering paused this replica) must not hold every handler back for good.

These drive kopf's own orchestration (spawn/terminate watchers, paused by a peering toggle) in
process: a paused watcher makes no API call, so no cluster is involved. The cluster tier's failover
test shows the same through two real operator processes."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import orchestration, queueing
from mlrollout.operator import handlers  # noqa: F401  (importing the handlers installs the fix)
from mlrollout.operator.kopf_index_release import install, releasing

PODS = kopf.Resource("", "v1", "pods", namespaced=True)


async def _never_called(**_: Any) -> None:
    raise AssertionError("a paused watcher processes no event")


async def _standby_with_a_watcher_in(namespace: str) -> orchestration.Ensemble:
    paused = aiotoggles.ToggleSet(any)
    await paused.make_toggle(True, name="peering: a higher-priority peer is active")
    ensemble = orchestration.Ensemble(
        operator_indexed=aiotoggles.ToggleSet(all),
        operator_paused=paused,
        peering_missing=await paused.make_toggle(name="peering CRD is missing"),
    )
    await orchestration.spawn_missing_watchers(
        processor=_never_called,
        settings=kopf.OperatorSettings(),
        indexed_resources={PODS},
        watched_resources={PODS},
        watched_namespaces={namespace},
        ensemble=ensemble,
    )
    return ensemble


async def _delete_namespace_and_report_readiness(namespace: str) -> tuple[bool, bool]:
    ensemble = await _standby_with_a_watcher_in(namespace)
    before = ensemble.operator_indexed.is_on()
    await orchestration.terminate_redundancies(
        remaining_resources={PODS}, remaining_namespaces={None}, ensemble=ensemble
    )
    return before, ensemble.operator_indexed.is_on()


def test_a_namespace_deleted_during_the_pause_releases_the_readiness_its_watcher_held() -> None:
    before, after = asyncio.run(_delete_namespace_and_report_readiness("r-gone"))
    assert before is False  # the paused watcher has not listed its pods: the indexes are incomplete
    assert after is True  # its namespace is no longer served: nothing holds the handlers back


def test_unfixed_kopf_still_leaks_the_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    # When this fails, kopf fixed it: mlrollout.operator.kopf_index_release can go.
    monkeypatch.setattr(queueing, "watcher", queueing.watcher.__wrapped__)
    _, after = asyncio.run(_delete_namespace_and_report_readiness("r-gone"))
    assert after is False


def test_a_worker_cancelled_before_it_indexed_its_object_releases_its_toggle() -> None:
    async def scenario() -> tuple[bool, bool]:
        indexed = aiotoggles.ToggleSet(all)
        toggle = await indexed.make_toggle(name="an object not indexed yet")

        async def stuck(**_: Any) -> None:
            await asyncio.Event().wait()  # a worker that never gets to index its object

        task = asyncio.create_task(releasing(stuck)(operator_indexed=indexed, resource_indexed=toggle))
        await asyncio.sleep(0)
        before = indexed.is_on()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return before, indexed.is_on()

    assert asyncio.run(scenario()) == (False, True)


def test_install_is_idempotent_and_wraps_both_kopf_functions() -> None:
    watcher, worker = queueing.watcher, queueing.worker
    install()
    assert (queueing.watcher, queueing.worker) == (watcher, worker)
    assert queueing.watcher.__wrapped__ is not None
    assert queueing.worker.__wrapped__ is not None


def test_install_refuses_a_kopf_whose_functions_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def watcher(*, namespace: str, resource_indexed: Any = None) -> None: ...

    monkeypatch.setattr(queueing, "watcher", watcher)
    with pytest.raises(RuntimeError, match=r"queueing.watcher has no keyword-only \['operator_indexed'\]"):
        install()
