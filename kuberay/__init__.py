"""The observatory on Kubernetes: a KubeRay RayService, its backing services, and a thin client."""
