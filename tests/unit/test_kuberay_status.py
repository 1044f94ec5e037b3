"""What `wait_ready` says is still pending, from a RayService's status as the operator writes it."""

from __future__ import annotations

from kuberay.status import RayServiceStatus


def status(side: dict) -> RayServiceStatus:
    s = RayServiceStatus.of(
        {
            "metadata": {"name": "observatory"},
            "status": {
                "conditions": [{"type": "Ready", "status": "False", "reason": "Initializing", "message": ""}],
                "pendingServiceStatus": side,
            },
        }
    )
    return s


def test_nothing_yet():
    assert status({}).still_pending() == ["no RayCluster yet"]


def test_each_application_and_deployment_that_is_not_up_is_named():
    s = status(
        {
            "rayClusterName": "observatory-abc",
            "applicationStatuses": {
                "gateway": {
                    "status": "DEPLOYING",
                    "serveDeploymentStatuses": {"Gateway": {"status": "UNHEALTHY", "message": "no API key exists"}},
                },
                "read": {"status": "RUNNING", "serveDeploymentStatuses": {"ReadModel": {"status": "HEALTHY"}}},
            },
        }
    )
    s.pending.cluster_state = "ready"
    assert s.still_pending() == ["app gateway DEPLOYING", "deployment gateway/Gateway UNHEALTHY: no API key exists"]


def test_a_cluster_without_applications():
    s = status({"rayClusterName": "observatory-abc"})
    assert s.still_pending() == [
        "pending cluster observatory-abc is not ready",
        "no Serve application reported on pending cluster observatory-abc",
    ]
