"""Which ModelDeployment a reconcile plans from: the watch-fed body when it is at the version the
operator last read or wrote, a fresh GET otherwise. The custom-objects API is a recording fake; the
rest of Kube is not involved."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from mlrollout.operator.kube import Kube


def _md(rv: str, phase: str = "Progressing") -> dict[str, Any]:
    meta = {"namespace": "ml", "name": "churn", "resourceVersion": rv}
    return {"metadata": meta, "status": {"phase": phase}}


@dataclass
class FakeCustom:
    """The apiserver's copy of one ModelDeployment; every GET and status patch is recorded."""

    obj: dict[str, Any] | None
    calls: list[str] = field(default_factory=list)

    async def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.calls.append("get")
        if self.obj is None:
            raise ApiException(status=404, reason="Not Found")
        return self.obj

    async def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("patch_status")
        assert self.obj is not None
        rv = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        self.obj = {**self.obj, "metadata": {**self.obj["metadata"], "resourceVersion": rv}, **args[-1]}
        return self.obj


def run(custom: FakeCustom, scenario: Callable[[Kube], Awaitable[None]]) -> None:
    """The scenario against a Kube whose custom-objects API is the fake (the client needs a loop)."""

    async def main() -> None:
        api = client.ApiClient()
        try:
            kube = Kube(api)
            kube.custom = custom
            await scenario(kube)
        finally:
            await api.close()

    asyncio.run(main())


def test_unknown_object_is_read_fresh_then_the_body_at_that_version_is_used() -> None:
    custom = FakeCustom(_md("7"))

    async def scenario(kube: Kube) -> None:
        assert await kube.current_model_deployment(_md("7")) == _md("7")
        assert custom.calls == ["get"]  # nothing known yet: a GET
        again = await kube.current_model_deployment(_md("7"))
        assert custom.calls == ["get"]
        assert again == _md("7")

    run(custom, scenario)


def test_body_lagging_our_own_status_write_is_never_planned_from() -> None:
    custom = FakeCustom(_md("7"))

    async def scenario(kube: Kube) -> None:
        await kube.current_model_deployment(_md("7"))
        await kube.patch_status("ml", "churn", {"phase": "Paused"})
        # The watch has not delivered our write yet: the body at 7 is stale, so read version 8.
        current = await kube.current_model_deployment(_md("7"))
        assert current is not None
        assert current["status"] == {"phase": "Paused"}
        assert custom.calls == ["get", "patch_status", "get"]
        # Once the body carries our write, it is used as it is.
        await kube.current_model_deployment(_md("8", "Paused"))
        assert custom.calls == ["get", "patch_status", "get"]

    run(custom, scenario)


def test_body_from_someone_elses_write_is_read_fresh_and_a_copy_is_returned() -> None:
    custom = FakeCustom(_md("7"))

    async def scenario(kube: Kube) -> None:
        await kube.current_model_deployment(_md("7"))
        custom.obj = _md("9", "Aborted")  # a user's write the operator did not make
        current = await kube.current_model_deployment(_md("9", "Aborted"))
        assert custom.calls == ["get", "get"]
        assert current == _md("9", "Aborted")
        body = _md("9", "Aborted")
        mine = await kube.current_model_deployment(body)
        assert mine == body
        assert mine is not body
        assert mine["status"] is not body["status"]

    run(custom, scenario)


def test_deleted_object_is_none_and_forgotten() -> None:
    custom = FakeCustom(_md("7"))

    async def scenario(kube: Kube) -> None:
        await kube.current_model_deployment(_md("7"))
        custom.obj = None
        kube.forget("ml", "churn")
        assert await kube.current_model_deployment(_md("7")) is None
        assert custom.calls == ["get", "get"]

    run(custom, scenario)
