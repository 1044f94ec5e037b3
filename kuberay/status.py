"""What a RayService, its RayCluster and the backing services report, read from the API objects as they are."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Condition(BaseModel):
    type: str
    status: str
    reason: str = ""
    message: str = ""


class DeploymentStatus(BaseModel):
    status: str = ""
    message: str = ""


class ApplicationStatus(BaseModel):
    status: str = ""
    message: str = ""
    deployments: dict[str, DeploymentStatus] = Field(default_factory=dict)


class ClusterSide(BaseModel):
    """The active or the pending half of a RayService: its RayCluster and the Serve applications on it."""

    cluster: str = ""
    cluster_state: str = ""  # the RayCluster's own status.state (e.g. "ready"), read from that object
    applications: dict[str, ApplicationStatus] = Field(default_factory=dict)

    @classmethod
    def of(cls, side: dict[str, Any] | None) -> ClusterSide:
        side = side or {}
        apps = {
            name: ApplicationStatus(
                status=app.get("status", ""),
                message=app.get("message", ""),
                deployments={
                    d: DeploymentStatus(status=s.get("status", ""), message=s.get("message", ""))
                    for d, s in (app.get("serveDeploymentStatuses") or {}).items()
                },
            )
            for name, app in (side.get("applicationStatuses") or {}).items()
        }
        return cls(cluster=side.get("rayClusterName", ""), applications=apps)


class Workload(BaseModel):
    kind: str
    name: str
    ready: int
    wanted: int


class RayServiceStatus(BaseModel):
    name: str
    exists: bool = True
    conditions: list[Condition] = Field(default_factory=list)
    service_status: str = ""  # the older status.serviceStatus field, when the operator sets it
    active: ClusterSide = Field(default_factory=ClusterSide)
    pending: ClusterSide = Field(default_factory=ClusterSide)
    serve_endpoints: int = 0
    backing: list[Workload] = Field(default_factory=list)

    @classmethod
    def of(cls, obj: dict[str, Any]) -> RayServiceStatus:
        status = obj.get("status") or {}
        return cls(
            name=obj["metadata"]["name"],
            conditions=[Condition.model_validate(c) for c in status.get("conditions") or []],
            service_status=status.get("serviceStatus", ""),
            active=ClusterSide.of(status.get("activeServiceStatus")),
            pending=ClusterSide.of(status.get("pendingServiceStatus")),
            serve_endpoints=status.get("numServeEndpoints") or 0,
        )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        ready = self.condition("Ready")
        return ready is not None and ready.status == "True"

    @property
    def reason(self) -> str:
        """Why it is (not) ready, in the operator's words: the Ready condition's reason and message."""
        if not self.exists:
            return "not found"
        ready = self.condition("Ready")
        if ready is None:
            return "no status yet (is the KubeRay operator running?)"
        return f"{ready.reason}: {ready.message}" if ready.message else ready.reason

    def still_pending(self) -> list[str]:
        """What is not there yet, one item each: clusters not ready, applications not RUNNING, deployments
        not HEALTHY (with the operator's or Serve's message)."""
        if not self.exists:
            return [f"RayService {self.name} does not exist"]
        out = []
        sides = [(label, side) for label, side in (("active", self.active), ("pending", self.pending)) if side.cluster]
        if not sides:
            out.append("no RayCluster yet")
        for label, side in sides:
            if side.cluster_state != "ready":
                out.append(f"{label} cluster {side.cluster} is {side.cluster_state or 'not ready'}")
            if not side.applications:
                out.append(f"no Serve application reported on {label} cluster {side.cluster}")
            for app, a in sorted(side.applications.items()):
                if a.status != "RUNNING":
                    out.append(f"app {app} {a.status or 'unknown'}{': ' + a.message if a.message else ''}")
                for d, ds in sorted(a.deployments.items()):
                    if ds.status != "HEALTHY":
                        out.append(
                            f"deployment {app}/{d} {ds.status or 'unknown'}{': ' + ds.message if ds.message else ''}"
                        )
        return out

    def lines(self) -> list[str]:
        """A few lines for a terminal: the verdict, each cluster and application, the backing services."""
        out = [f"RayService {self.name}: {'Ready' if self.ready else 'not ready'} ({self.reason})"]
        for label, side in (("active", self.active), ("pending", self.pending)):
            if not side.cluster:
                continue
            out.append(f"  {label} cluster {side.cluster}: {side.cluster_state or 'unknown'}")
            for app, s in sorted(side.applications.items()):
                out.append(f"    app {app}: {s.status}{' — ' + s.message if s.message else ''}")
                for d, ds in sorted(s.deployments.items()):
                    out.append(f"      deployment {d}: {ds.status}{' — ' + ds.message if ds.message else ''}")
        if self.ready:
            out.append(f"  serve endpoints: {self.serve_endpoints}")
        for w in self.backing:
            out.append(f"  {w.kind.lower()} {w.name}: {w.ready}/{w.wanted} ready")
        return out
