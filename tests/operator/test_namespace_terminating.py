"""A write refused because its namespace is being deleted is told apart from other 403s."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from mlrollout.operator.kube import namespace_terminating

# What kube-apiserver 1.33 answered a Deployment create in a terminating namespace (bench_peers teardown).
TERMINATING = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'deployments.apps "md-0000-v1-c33e2f" is forbidden: unable to create new content in namespace '
    "peers-mode-100-13305 because it is being terminated",
    "reason": "Forbidden",
    "details": {
        "name": "md-0000-v1-c33e2f",
        "group": "apps",
        "kind": "deployments",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace peers-mode-100-13305 is being terminated",
                "field": "metadata.namespace",
            }
        ],
    },
    "code": 403,
}
RBAC = {**TERMINATING, "message": "deployments.apps is forbidden: User cannot create", "details": {}}


def refused(status: int, body: object) -> ApiException:
    exc = ApiException(status=status, reason="Forbidden")
    exc.body = body if isinstance(body, str) or body is None else json.dumps(body)
    return exc


@pytest.mark.parametrize(
    ("exc", "want"),
    [
        (refused(403, TERMINATING), True),
        (refused(403, RBAC), False),  # a missing permission must still be reported and retried
        (refused(409, TERMINATING), False),
        (refused(403, "not json"), False),
        (refused(403, None), False),
        (refused(403, ["a", "list"]), False),
    ],
)
def test_only_a_terminating_namespace_counts(exc: ApiException, want: bool) -> None:
    assert namespace_terminating(exc) is want
