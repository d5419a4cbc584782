"""Settings the API server (or KEDA) refuses at install are refused at render, naming the value,
what was given and the limit: otherwise `helm install` creates half the release before one object
fails, and Argo CD shows a degraded app, each with a message about an object, not a value.

What the cluster does, from its source: HPA maxReplicas must be >= minReplicas (kubernetes
pkg/apis/autoscaling/validation); KEDA's ScaledObject CRD (from 2.20) and admission webhook refuse
minReplicaCount > maxReplicaCount, and without them its operator marks the object not Ready and
creates no HPA (kedacore/keda apis/keda/v1alpha1/scaledobject_types.go,
CheckReplicaCountBoundsAreValid); a nodePort outside --service-node-port-range is "not in the valid
range" (pkg/registry/core/service/portallocator); an Ingress host must be a lower-case
DNS-1123 subdomain, optionally "*.", never an IP (pkg/apis/networking/validation); a request above
its limit is refused (pkg/apis/core/validation, ValidateResourceRequirements); a claim's size must
be above zero; label keys and values must be qualified names (nodeSelector too), annotation keys
too; storage and Ingress class names must be DNS subdomains; a PodDisruptionBudget's string
maxUnavailable must be a percentage of at most 100%; a CronJob schedule must parse.
"""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest

from tests.deploy.manifests import find, one, render_objects

SCRAPED = {"scrapedWithoutServiceMonitor": True}


def autoscaling(mode: str, low: int, high: int) -> dict:
    return {"autoscaling": {"mode": mode, "minReplicas": low, "maxReplicas": high, **SCRAPED}}


def ingress(host: str | None) -> dict:
    return {"api": {"ingress": {"enabled": True, "host": host}}}


def node_port(port: int, **more) -> dict:
    return {"api": {"service": {"type": "NodePort", "nodePort": port, **more}}}


def resources(component: str, requests: dict, limits: dict) -> dict:
    block = {"resources": {"requests": requests, "limits": limits}}
    if component == "redis.exporter":
        return {"redis": {"exporter": {"enabled": True, **block}}}
    if component == "data.loader":
        return {"data": {"loader": block}}
    return {component: block}


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (autoscaling("keda", 5, 3), r"autoscaling\.minReplicas \(5\) is above autoscaling\.maxReplicas \(3\).*KEDA"),
        (autoscaling("hpa", 4, 2), r"minReplicas \(4\) is above .*maxReplicas \(2\).*HorizontalPodAutoscaler"),
        (node_port(8080), r"api\.service\.nodePort \(8080\) is outside the node port range 30000-32767"),
        (node_port(32768), r"nodePort \(32768\) is outside"),
        (
            node_port(30080, nodePortRange="20000-22767"),
            r"nodePort \(30080\) is outside the node port range 20000-22767",
        ),
        (
            ingress("Jobs.Example.com"),
            r'api\.ingress\.host "Jobs\.Example\.com" is not a DNS name in lower case.*use "jobs\.example\.com"',
        ),
        (ingress("https://jobs.example.com/"), r"is a URL; give the host name alone"),
        (ingress("129.114.1.2"), r"is an IP address"),
        (ingress("jobs.example.com:8080"), r"has a port"),
        (ingress("jobs_api.example.com"), r"not a DNS name in lower case"),
        (ingress("-jobs.example.com"), r"not a DNS name"),
        (ingress("a" * 250 + ".com"), r"254 characters long, over the 253"),
        # `host: null` in a values file removes the chart's default: the message names the value and
        # what to write, never Go's "<nil>"
        (
            ingress(None),
            r"api\.ingress\.host is not set \(null in a values file removes the chart's default\): leave the key "
            r"out .*or give the DNS name the Ingress routes",
        ),
        (
            resources("worker", {"memory": "2Gi"}, {"memory": "1Gi"}),
            r"worker\.resources\.requests\.memory \(2Gi\) is above worker\.resources\.limits\.memory \(1Gi\)",
        ),
        (
            resources("api", {"cpu": "1500m"}, {"cpu": 1}),
            r"api\.resources\.requests\.cpu \(1500m\) is above api\.resources\.limits\.cpu \(1\)",
        ),
        (
            resources("data.loader", {"memory": "1100M"}, {"memory": "1Gi"}),
            r"data\.loader\.resources\.requests\.memory",
        ),
        (resources("redis", {"cpu": "2"}, {"cpu": "1"}), r"redis\.resources\.requests\.cpu \(2\)"),
        (
            resources("redis.exporter", {"memory": "128Mi"}, {"memory": "64Mi"}),
            r"redis\.exporter\.resources\.requests\.memory",
        ),
        (
            resources("worker", {"cpu": "half"}, {"cpu": "1"}),
            r'worker\.resources\.requests\.cpu is "half", which is not a Kubernetes quantity',
        ),
        ({"data": {"persistence": {"size": "0"}}}, r'data\.persistence\.size is "0", not a volume size'),
        ({"data": {"persistence": {"size": "500m"}}}, r'data\.persistence\.size is "500m".*thousandths of a byte'),
        ({"redis": {"persistence": {"size": "0Gi"}}}, r"redis\.persistence\.size"),
        ({"redis": {"backup": {"enabled": True, "size": "0"}}}, r"redis\.backup\.size"),
        (
            {"data": {"persistence": {"accessModes": ["ReadWriteOncePod"]}}},
            r"ReadWriteOncePod.*all but one would stay Pending",
        ),
    ],
)
def test_a_value_the_cluster_refuses_stops_the_render_naming_it(values, says):
    with pytest.raises(helm.HelmError, match=says):
        render_objects(values)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"commonLabels": {"owner": "Jane Doe"}}, "/commonLabels/owner"),  # a space in a label value
        ({"commonLabels": {"course": "c" * 64}}, "/commonLabels/course"),  # 63 characters at most
        ({"commonLabels": {"my course": "coe332"}}, "invalid propertyName 'my course'"),  # a space in a key
        (
            {"metrics": {"serviceMonitor": {"labels": {"release": "kube prometheus"}}}},
            "/metrics/serviceMonitor/labels/release",
        ),
        ({"redis": {"backup": {"schedule": "hourly"}}}, "/redis/backup/schedule"),
        ({"redis": {"backup": {"schedule": "0 17 * * * *"}}}, "/redis/backup/schedule"),  # 6 fields: seconds
        ({"redis": {"backup": {"schedule": "TZ=UTC 17 * * * * *"}}}, "/redis/backup/schedule"),
        ({"redis": {"backup": {"timeZone": "America/New York"}}}, "/redis/backup/timeZone"),
        ({"api": {"service": {"nodePortRange": "30000:32767"}}}, "/api/service/nodePortRange"),
        ({"api": {"ingress": {"className": "NGINX"}}}, "/api/ingress/className"),  # ValidateIngressClassName
        ({"data": {"persistence": {"storageClass": "cinder_csi"}}}, "/data/persistence/storageClass"),
        ({"redis": {"persistence": {"storageClass": "Fast SSD"}}}, "/redis/persistence/storageClass"),
        ({"worker": {"nodeSelector": {"node-role": "big memory"}}}, "/worker/nodeSelector/node-role"),
        ({"api": {"podAnnotations": {"my note": "x"}}}, "invalid propertyName 'my note'"),
        ({"api": {"pdb": {"maxUnavailable": "1"}}}, "/api/pdb/maxUnavailable"),  # a string must be a percentage
        ({"worker": {"pdb": {"maxUnavailable": "150%"}}}, "/worker/pdb/maxUnavailable"),
        ({"worker": {"pdb": {"maxUnavailable": -1}}}, "/worker/pdb/maxUnavailable"),
    ],
)
def test_the_schema_refuses_labels_and_schedules_the_api_server_refuses(values, says):
    if says.startswith("/"):
        says = f"at '{says}'"
    with pytest.raises(helm.HelmError, match=says):
        render_objects(values)


@pytest.mark.parametrize(
    "values",
    [
        autoscaling("keda", 3, 3),  # equal is allowed by both KEDA and the HPA
        autoscaling("keda", 0, 1),
        autoscaling("hpa", 0, 1),  # the chart's HPA runs at least 1
        {"autoscaling": {"mode": "none", "minReplicas": 5, "maxReplicas": 3}},  # unused: no scaler
        node_port(30000),
        node_port(32767),
        node_port(8080, nodePortRange="1-9999"),  # a cluster with another range
        {"api": {"service": {"type": "LoadBalancer"}}},
        ingress("jobs.example.com"),
        ingress("*.apps.example.com"),
        ingress("username-atx-jobqueue.coe332.tacc.cloud"),
        resources("worker", {"cpu": 0.5, "memory": "1Gi"}, {"cpu": "500m", "memory": "1024Mi"}),  # equal
        resources("api", {"cpu": "100m"}, {}),  # no limit: nothing to compare
        {"data": {"persistence": {"size": "1.5Gi"}}},
        {"data": {"persistence": {"enabled": False, "size": "0"}}},  # no claim made
        {"data": {"persistence": {"accessModes": ["ReadWriteOncePod"], "existingClaim": "mine"}}},
        {"commonLabels": {"course": "coe332", "example.org/owner": "jane.doe", "empty": ""}},
        {"api": {"ingress": {"enabled": True, "className": "nginx-internal"}}},
        {"data": {"persistence": {"storageClass": "cinder-csi"}}},
        {"worker": {"nodeSelector": {"kubernetes.io/arch": "amd64"}, "pdb": {"maxUnavailable": "50%"}}},
        {"api": {"podAnnotations": {"Example.org/Note": "any text, spaces too"}}},  # keys are checked in lower case
        {"redis": {"backup": {"enabled": True, "schedule": "@hourly"}}},
        {"redis": {"backup": {"enabled": True, "schedule": "*/15  *  * * 1-5"}}},
    ],
)
def test_the_limits_themselves_render(values):
    render_objects(values)


def test_the_node_port_reaches_the_service_and_the_range_is_only_checked():
    (svc,) = [s for s in find(render_objects(node_port(30080)), "Service", "api") if s["spec"]["type"] == "NodePort"]
    assert svc["spec"]["ports"][0]["nodePort"] == 30080
    assert "nodePortRange" not in str(svc)


def test_an_ingress_host_renders_as_given():
    rule = one(render_objects(ingress("*.apps.example.com")), "Ingress", "api")["spec"]["rules"][0]
    assert rule["host"] == "*.apps.example.com"


def _backup(**backup) -> dict:
    return one(render_objects({"redis": {"backup": {"enabled": True, **backup}}}), "CronJob")["spec"]


@pytest.mark.parametrize("prefix", ["CRON_TZ", "TZ"])
def test_a_time_zone_in_the_schedule_moves_to_the_time_zone_field(prefix):
    """A schedule "CRON_TZ=<zone> <fields>" was accepted by the chart and by Kubernetes before 1.29,
    which refuses it in a new CronJob ("cannot use TZ or CRON_TZ in schedule, use timeZone field
    instead"; kubernetes/kubernetes#116252) and beside spec.timeZone in any: an installation that
    has one upgrades without a change, into the supported field."""
    spec = _backup(schedule=f"{prefix}=America/Chicago  17 3 * * *")
    assert (spec["schedule"], spec["timeZone"]) == ("17 3 * * *", "America/Chicago")
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup"}, "spec": spec}
    kubernetes_validate.validate(cronjob, "1.28.0", strict=True)  # the field exists (GA in 1.27)
    assert _backup(schedule="@daily", timeZone="Europe/Berlin")["timeZone"] == "Europe/Berlin"
    assert "timeZone" not in _backup()  # empty is refused by the API server ("must be nil or non-empty")


def test_a_time_zone_in_both_places_is_refused_naming_the_prefix():
    with pytest.raises(helm.HelmError, match='remove the "CRON_TZ=UTC" prefix'):
        _backup(schedule="CRON_TZ=UTC 17 * * * *", timeZone="UTC")


def test_first_install_shows_the_messages_helm_install_prints():
    """docs/first-install.md, step 1: each refusal its table quotes is what the chart says to the
    install it describes. The table quoted the API image (`atx-jobqueue-api:0.1.0`), while Helm
    renders the worker's Deployment first and so names `atx-jobqueue-worker:0.1.0`."""
    import re

    from tests.deploy.manifests import REPO_ROOT, render_chart, scenario_values

    text = (REPO_ROOT / "docs" / "first-install.md").read_text()
    table = text.split("## 1. Install", 1)[1].split("Without Helm:", 1)[0]
    shown = [m for m in re.findall(r"^\| `([^`]+)` \|", table, re.M) if not m.startswith(("Error:", "cannot re-use"))]
    class_values = scenario_values("class-cluster")
    installs = {
        # step 1's command without --set image.registry
        "image.registry is not set": {**class_values, "image": {"tag": "0.1.0"}},
        "autoscaling.mode=keda": {**class_values, "autoscaling": {"mode": "keda"}},
    }
    assert sorted(m.split(",")[0].split(" reads")[0] for m in shown) == sorted(installs), shown
    for message in shown:
        values = next(v for k, v in installs.items() if message.startswith(k))
        with pytest.raises(helm.HelmError) as refused:
            render_chart(values, bare=True, name="jobs")
        assert message.removesuffix(" ...") in str(refused.value), (message, str(refused.value)[:400])
