"""The timeout chain of a request and of a shutdown, from the rendered manifests and the code.

- ingress-nginx reads an upstream answer for `proxy-read-timeout` seconds (default 60,
  https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/#custom-timeouts):
  it must outlast the longest `?wait=` long poll, MAX_WAIT_SECONDS, with a margin.
- On SIGTERM gunicorn lets requests finish for its `graceful_timeout`
  (services/api/jobqueue_api/serve.py, from the same settings); the kubelet runs the preStop hook
  first and kills the pod at `terminationGracePeriodSeconds`, counted from the start of preStop.
  A stopping API answers its long polls at once (tests/api/test_shutdown.py), so neither depends
  on MAX_WAIT_SECONDS any more: a 300 s cap once meant a 315 s grace.
- Scale-in never cuts a job: a job runs at most JOB_TIMEOUT_SECONDS from its start, which is before
  the SIGTERM, so a SHUTDOWN_GRACE_SECONDS of at least that lets every job end by itself (complete,
  or failed on its limit); the pod's grace must be longer still, or the kubelet's SIGKILL lands on
  the worker while it records the outcome. Review 3.8: the grace was 60 s against a 300 s limit,
  so a job over 60 s went back to the queue at every scale-in (tests/deploy/test_scale_in.py runs
  the real worker through it).
- Against a hung Redis, /readyz fails before the kubelet's readiness probe times out.
- The loader's own time limit must be below the `helm --timeout` the docs tell you to use.
Review finding 2.9: 60 s long polls met ingress-nginx's 60 s, and the API had the default 30 s grace
against gunicorn's 65 s, with no preStop.
"""

from __future__ import annotations

import re

import pytest

from jobqueue.settings import SPEC, load_settings
from tests.deploy.manifests import (
    REPO_ROOT,
    SCENARIOS,
    k8s_objects,
    pod_spec,
    render_objects,
    resolved_env,
    installed_objects,
    scenario_objects,
    scenario_values,
)

SOURCES = [f"chart:{s}" for s in SCENARIOS] + ["k8s:test", "k8s:prod"]
MARGIN = 10  # seconds between one timeout and the next in the chain
NGINX_DEFAULT_READ_TIMEOUT = 60


def _objects(source):
    kind, name = source.split(":")
    return installed_objects(name) if kind == "chart" else k8s_objects(name)


def _deployment(objs, component):
    (found,) = [
        o
        for o in objs
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def _main(deployment, name):
    (c,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == name]
    return c


def _settings(container, objs):
    return load_settings({k: v for k, v in resolved_env(container, objs).items() if k in SPEC})


def _prestop_seconds(container) -> float:
    hook = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = (hook.get("exec") or {}).get("command") or []
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


@pytest.mark.parametrize("source", SOURCES)
def test_ingress_outlasts_the_longest_long_poll(source):
    objs = _objects(source)
    max_wait = _settings(_main(_deployment(objs, "api"), "api"), objs).max_wait_seconds
    for ingress in (o for o in objs if o["kind"] == "Ingress"):
        if ingress["spec"].get("ingressClassName") != "nginx":
            continue
        annotations = ingress["metadata"].get("annotations") or {}
        for key in ("nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout"):
            timeout = float(annotations.get(key, NGINX_DEFAULT_READ_TIMEOUT))
            assert timeout >= max_wait + MARGIN, f"{source}: {key} {timeout} s cuts a {max_wait} s long poll"


@pytest.mark.parametrize("source", SOURCES)
def test_readiness_fails_within_the_probe_timeout_when_redis_hangs(source):
    """Against a Redis that hangs, /readyz answers its 503 within READY_REDIS_SECONDS (or
    REDIS_TIMEOUT_SECONDS when less; tests/api/test_hung_redis.py): that must come before the
    kubelet gives up on the probe (``timeoutSeconds``, 1 s when unset:
    https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/#configure-probes),
    or each probe holds a request for its whole timeout and the pod leaves its Service only by the
    probe's own timeouts."""
    from jobqueue_api.routes.health import READY_REDIS_SECONDS

    objs = _objects(source)
    main = _main(_deployment(objs, "api"), "api")
    answers_within = min(READY_REDIS_SECONDS, _settings(main, objs).redis_timeout_seconds)
    probe_timeout = main["readinessProbe"].get("timeoutSeconds", 1)
    assert answers_within < probe_timeout, (
        f"{source}: /readyz may take {answers_within} s, the probe gives it {probe_timeout} s"
    )


@pytest.mark.parametrize("source", SOURCES)
def test_api_pod_outlives_preStop_and_gunicorns_graceful_timeout(source):
    from jobqueue_api.serve import gunicorn_options

    objs = _objects(source)
    api = _deployment(objs, "api")
    main = _main(api, "api")
    graceful = gunicorn_options(_settings(main, objs))["graceful_timeout"]
    prestop = _prestop_seconds(main)
    assert prestop > 0, f"{source}: no preStop delay: gunicorn closes its socket while endpoints still route to it"
    grace = pod_spec(api).get("terminationGracePeriodSeconds", 30)
    assert grace >= prestop + graceful + 5, (
        f"{source}: grace {grace} s < preStop {prestop} s + gunicorn graceful {graceful} s"
    )


@pytest.mark.parametrize("config", [{}, {"maxWaitSeconds": 300}, {"clientTimeoutSeconds": 60}])
def test_the_api_grace_is_preStop_plus_gunicorns_graceful_timeout(config):
    """The helper computes gunicorn's graceful_timeout as serve.py does: the long-poll cap leaves it
    alone (45 s with the defaults, not 80, and not 345 with a 300 s cap), a longer client timeout
    lengthens it."""
    from jobqueue_api.serve import gunicorn_options

    objs = render_objects({"config": config})
    api = _deployment(objs, "api")
    main = _main(api, "api")
    graceful = gunicorn_options(_settings(main, objs))["graceful_timeout"]
    assert pod_spec(api)["terminationGracePeriodSeconds"] == _prestop_seconds(main) + graceful + 10
    assert graceful == (125 if config.get("clientTimeoutSeconds") else 30)


@pytest.mark.parametrize("source", SOURCES)
def test_worker_pod_outlives_its_shutdown_grace(source):
    objs = _objects(source)
    worker = _deployment(objs, "worker")
    settings = _settings(_main(worker, "worker"), objs)
    assert pod_spec(worker).get("terminationGracePeriodSeconds", 30) >= settings.shutdown_grace_seconds + MARGIN


@pytest.mark.parametrize("source", SOURCES)
def test_worker_grace_covers_the_job_timeout(source):
    objs = _objects(source)
    settings = _settings(_main(_deployment(objs, "worker"), "worker"), objs)
    assert settings.shutdown_grace_seconds >= settings.job_timeout_seconds, (
        f"{source}: SHUTDOWN_GRACE_SECONDS {settings.shutdown_grace_seconds:g} < JOB_TIMEOUT_SECONDS "
        f"{settings.job_timeout_seconds:g}: a scale-in hands back every job running longer than the grace"
    )


@pytest.mark.parametrize("timeout", [30, 300, 3600])
def test_the_grace_follows_the_job_timeout(timeout):
    objs = render_objects({"config": {"jobTimeoutSeconds": timeout}})
    worker = _deployment(objs, "worker")
    settings = _settings(_main(worker, "worker"), objs)
    assert settings.shutdown_grace_seconds == timeout
    assert pod_spec(worker)["terminationGracePeriodSeconds"] >= timeout + MARGIN


def test_chart_refuses_a_grace_below_the_job_timeout():
    with pytest.raises(
        Exception, match=r"config.shutdownGraceSeconds \(60\) is below config.jobTimeoutSeconds \(300\)"
    ):
        render_objects({"config": {"shutdownGraceSeconds": 60, "jobTimeoutSeconds": 300}})
    objs = render_objects({"config": {"shutdownGraceSeconds": 400, "jobTimeoutSeconds": 300}})
    assert _settings(_main(_deployment(objs, "worker"), "worker"), objs).shutdown_grace_seconds == 400


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if scenario_values(s).get("autoscaling", {}).get("mode") in ("keda", "hpa")]
)
def test_scale_down_counts_running_jobs_and_waits(scenario):
    """The autoscaler's backlog includes running jobs, so a worker with a job is counted as needed
    and the last one is not removed (KEDA's activation) while it runs; scale-down waits out a
    stabilization window, so a dip between bursts does not start (and a new burst re-run) a drain."""
    objs = scenario_objects(scenario)
    mode = scenario_values(scenario)["autoscaling"]["mode"]
    if mode == "keda":
        (so,) = [o for o in objs if o["kind"] == "ScaledObject"]
        assert "jobqueue_jobs_in_progress" in so["spec"]["triggers"][0]["metadata"]["query"]
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    else:
        (hpa,) = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
        adapter = (REPO_ROOT / "helm" / "prometheus-adapter-values.yaml").read_text()
        assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] in adapter
        assert "jobqueue_jobs_in_progress" in adapter
        behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60


def _documented_helm_timeout() -> float:
    text = (REPO_ROOT / "docs" / "deployment.md").read_text()
    found = [
        int(m[1]) * (60 if m[2] == "m" else 1)
        for m in re.finditer(r"--timeout[ =](\d+)([ms])", text)
        if "helm" in text[max(0, m.start() - 400) : m.start()].lower()
    ]
    assert found, "docs/deployment.md gives no helm --timeout for a downloading loader"
    return max(found)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_loader_stops_before_the_documented_helm_timeout(scenario):
    objs = scenario_objects(scenario)
    for obj in objs:
        if obj["kind"] not in ("Deployment", "Job"):
            continue
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] not in ("load-data", "loader"):
                continue
            if c["command"][0] == "timeout":
                deadline = float(c["command"][1])
            else:
                deadline = float(obj["spec"].get("activeDeadlineSeconds", float("inf")))
            assert deadline + MARGIN <= _documented_helm_timeout(), f"{scenario}: the loader may run {deadline} s"


HELM_TEST_TIMEOUT = 300  # `helm test --timeout`: "(default 5m0s)"; the wait for the test pod to end


def test_helm_test_answers_before_helms_own_timeout():
    """`helm test` waits --timeout (5 minutes unless given) for the test pod, then fails with
    Helm's "timed out waiting for the condition", leaving the pod (its delete policy removes it only
    after a pass) and no word from the script. The script must give its own answer first ("the API
    never became ready", "job ... still submitted after the timeout"): its deadline, plus the one
    request it may start just before it, plus the image pull's margin, stays under Helm's wait; and a
    longer tests.timeoutSeconds is documented with the --timeout it needs."""
    import yaml

    from tests.deploy.manifests import CHART

    script = (CHART / "files" / "scripts" / "helm_test.py").read_text()
    longest_request = max(int(t) for t in re.findall(r"timeout=(\d+)\)", script))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["tests"]["timeoutSeconds"] + 2 * longest_request + 60 < HELM_TEST_TIMEOUT
    text = (CHART / "values.yaml").read_text()
    (param,) = [line for line in text.splitlines() if "@param tests.timeoutSeconds" in line]
    assert "helm test --timeout" in param, param


def test_worker_liveness_as_operations_md_measured_it():
    """docs/operations.md gives the worker's liveness margin measured at 10x data against the
    rendered probe (every 20 s, 5 s timeout, 3 failures): the probe must still be that one."""
    from tests.deploy.manifests import REPO_ROOT, one

    (worker,) = one(scenario_objects("default"), "Deployment", "worker")["spec"]["template"]["spec"]["containers"]
    probe = worker["livenessProbe"]
    assert (probe["httpGet"]["path"], probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"]) == (
        "/metrics",
        20,
        5,
        3,
    )
    text = " ".join((REPO_ROOT / "docs" / "operations.md").read_text().split())
    assert "Liveness probes every 20 s with a 5 s timeout and restarts the container after 3 failures" in text
