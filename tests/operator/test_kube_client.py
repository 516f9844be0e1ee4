"""The operator's Kubernetes client session: no per-request environment lookups unless a proxy is set."""

from __future__ import annotations

import asyncio

import pytest
from mlrollout.operator.kube import api_client


def trusts_env() -> bool:
    async def build() -> bool:
        api = api_client()
        try:
            return bool(api.rest_client.pool_manager.trust_env)
        finally:
            await api.close()

    return asyncio.run(build())


def test_without_a_proxy_variable_requests_skip_the_netrc_and_proxy_lookups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert trusts_env() is False


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_variable_keeps_the_environment_trusted(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "http://127.0.0.1:3128")
    assert trusts_env() is True
