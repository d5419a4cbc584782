"""Scrape jobs shaped like the chart's ServiceMonitor and PodMonitors, over a local Stack.

The chart scrapes the API through a ServiceMonitor (port ``http``, ``/metrics``) and each worker
pod through a PodMonitor (port ``metrics``, ``/metrics``). In a cluster those add the target
labels ``namespace``, ``pod``, ``service``/``endpoint``, a ``job`` per monitor and (relabelled from
the pods' ``app.kubernetes.io/instance``) ``app_kubernetes_io_instance``; the static jobs here carry
the same labels, so the rules' ``without (instance, pod)`` and ``on (namespace, app_kubernetes_io_instance)``
and the chart's autoscaling query (which filters on ``namespace``) meet series shaped as in a
cluster.
"""

from __future__ import annotations

from devstack.prometheus_server import static_job
from devstack.stack import Stack


def scrape_configs(
    stack: Stack,
    namespace: str,
    release: str = "atx-jobqueue",
    api_metrics_path: str = "/metrics",
    worker_metrics_path: str = "/metrics",
) -> list[dict]:
    """Jobs equivalent to the chart's ServiceMonitor (API) and PodMonitor (workers)."""
    api = static_job(
        f"{release}-api",
        [f"127.0.0.1:{stack.api_port}"],
        {
            "namespace": namespace,
            "app_kubernetes_io_instance": release,
            "pod": f"{release}-api-0",
            "service": f"{release}-api",
            "endpoint": "http",
        },
        metrics_path=api_metrics_path,
    )
    jobs = [api]
    if stack.exporter:
        # the chart's second ServiceMonitor: the redis_exporter sidecar, port "metrics"
        jobs.append(
            static_job(
                f"{release}-redis",
                [f"127.0.0.1:{stack.exporter.port}"],
                {
                    "namespace": namespace,
                    "app_kubernetes_io_instance": release,
                    "pod": f"{release}-redis-0",
                    "service": f"{release}-redis",
                    "endpoint": "metrics",
                },
            )
        )
    if stack.workers:
        # one job for all worker pods, as one PodMonitor gives (job="<namespace>/<name>")
        jobs.append(
            {
                "job_name": f"{namespace}/{release}-worker",
                "metrics_path": worker_metrics_path,
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{w.port}"],
                        "labels": {
                            "namespace": namespace,
                            "app_kubernetes_io_instance": release,
                            "pod": f"{release}-worker-{i}",
                            "endpoint": "metrics",
                        },
                    }
                    for i, w in enumerate(stack.workers)
                ],
            }
        )
    return jobs
