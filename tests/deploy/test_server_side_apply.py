"""The chart's Deployments as the API server merges them, upgrade after upgrade, when Helm 4 applies
server-side (its default for a new release: docs/deployment.md, "Which patch Helm sends").

ssa/main.go runs the API server's own merge library, structured-merge-diff (Debian's
golang-k8s-sigs-structured-merge-diff-dev), with the field manager "helm" applying each render
(force-conflicts off unless asked, as in Helm), the HPA controller writing replicas as another
manager, and after each step the API server's defaulting and its one validation rule on the
strategy. The rules it shows (Kubernetes' server-side apply docs, "Field management" and
"Conflicts"; structured-merge-diff merge/update.go, Updater.prune):
- a field the API server defaulted belongs to no manager and no apply removes it; a field Helm
  applied before and leaves out now is removed (or reset to its default);
- an apply that sets a field another manager last changed to a different value is a conflict.
So the chart writes the default strategy out in full (a later switch to Recreate must remove
rollingUpdate: openshift/cluster-network-operator#3121 met the defaulted case), and under KEDA it
writes no worker count even in restore mode (KEDA's pause annotation holds them at 0).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import one, render_objects

SMD = Path("/usr/share/gocode/src/sigs.k8s.io/structured-merge-diff")
SOURCE = Path(__file__).parent / "ssa" / "main.go"
MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}}}
RESTORE = {"redis": {"restore": {"enabled": True, "file": "dump.rdb"}}}

pytestmark = pytest.mark.skipif(
    not (shutil.which("go") and SMD.is_dir()),
    reason="no Go or structured-merge-diff (scripts/bootstrap.sh installs golang-go and "
    "golang-k8s-sigs-structured-merge-diff-dev)",
)


@pytest.fixture(scope="module")
def run_steps(tmp_path_factory):
    """Build ssa/main.go against Debian's structured-merge-diff (a GOPATH of links, no network)
    and return a function: steps -> what the API server made of each."""
    root = tmp_path_factory.mktemp("gopath")
    src = root / "src"
    (src / "sigs.k8s.io" / "structured-merge-diff").mkdir(parents=True)
    (src / "sigs.k8s.io" / "structured-merge-diff" / "v4").symlink_to(SMD)
    for name in ("github.com", "gopkg.in"):
        (src / name).symlink_to(SMD.parent.parent / name)
    (src / "ssa").mkdir()
    shutil.copy(SOURCE, src / "ssa" / "main.go")
    binary = root / "ssa-apply"
    env = {**os.environ, "GOPATH": str(root), "GO111MODULE": "off", "GOCACHE": str(root / "cache"), "GOFLAGS": ""}
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=src / "ssa", env=env, check=True, timeout=300)

    def run(steps: list[dict]) -> list[dict]:
        done = subprocess.run([str(binary)], input=json.dumps(steps), capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    return run


def helm_apply(component: str, values: dict | None = None, force: bool = False) -> dict:
    """Helm's apply of the component's Deployment as the chart renders it from these values (the
    spec's replicas and strategy, the fields the steps are about)."""
    spec = one(render_objects(values or {}), "Deployment", component)["spec"]
    return {"manager": "helm", "op": "apply", "spec": _fields(spec), "force": force}


def earlier_chart_apply(replicas: int | None = None) -> dict:
    """An apply of a chart before this one, which rendered no strategy for empty values."""
    return {"manager": "helm", "op": "apply", "spec": {} if replicas is None else {"replicas": replicas}}


def hpa_scales_to(replicas: int) -> dict:
    """The HPA controller (KEDA's HPA, or the chart's own in hpa mode) writing the scale subresource."""
    return {"manager": "kube-controller-manager", "op": "update", "spec": {"replicas": replicas}}


def _fields(spec: dict) -> dict:
    return {k: spec[k] for k in ("replicas", "strategy") if k in spec}


def _refused_or_conflicting(results: list[dict]) -> list[bool]:
    return [r["refused"] or bool(r["conflicts"]) for r in results]


@pytest.mark.parametrize("component", ["api", "worker"])
def test_a_release_installed_with_defaults_can_switch_to_recreate(run_steps, component):
    first, second = run_steps(
        [helm_apply(component), helm_apply(component, {component: {"strategy": {"type": "Recreate"}}})]
    )
    assert not first["refused"] and not second["refused"], (first, second)
    assert second["spec"]["strategy"] == {"type": "Recreate", "rollingUpdate": None}, second


@pytest.mark.parametrize("component", ["api", "worker"])
def test_back_and_forth_between_the_strategies(run_steps, component):
    """Default, Recreate, default again, a partial rollingUpdate (the other field's default filled
    in by the chart), Recreate again: every upgrade accepted, each with what it asked for."""
    asked = [None, {"type": "Recreate"}, None, {"rollingUpdate": {"maxSurge": 0}}, {"type": "Recreate"}]
    results = run_steps([helm_apply(component, {component: {"strategy": s}} if s else {}) for s in asked])
    assert _refused_or_conflicting(results) == [False] * len(asked), results
    assert results[2]["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert results[3]["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": "25%"}
    assert results[4]["spec"]["strategy"].get("rollingUpdate") is None, results[4]


def test_a_release_whose_first_render_had_no_strategy_is_refused(run_steps):
    """An earlier chart rendered no strategy: the defaulted rollingUpdate is nobody's, the apply of
    Recreate keeps it and the API server refuses the upgrade. The rendered rollingUpdate: null does
    not help server-side (it only makes Helm own the key)."""
    first, second = run_steps(
        [earlier_chart_apply(2), helm_apply("worker", {"worker": {"strategy": {"type": "Recreate"}}})]
    )
    assert not first["refused"]
    assert second["refused"], second
    assert second["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}


def test_such_a_release_switches_after_one_upgrade_to_this_chart(run_steps):
    """docs/deployment.md's way out: upgrade to this chart with the strategy as it was first (Helm
    applies the live values and owns them from then on), then to Recreate."""
    results = run_steps(
        [
            earlier_chart_apply(2),
            helm_apply("worker"),
            helm_apply("worker", {"worker": {"strategy": {"type": "Recreate"}}}),
        ]
    )
    assert _refused_or_conflicting(results) == [False, False, False], results
    assert results[2]["spec"]["strategy"].get("rollingUpdate") is None, results[2]


def test_restore_mode_under_keda_writes_no_worker_count(run_steps):
    """KEDA's HPA has been setting the workers' replicas; restore mode and back leave the field to
    it (the ScaledObject's pause annotation holds the workers at 0), so neither upgrade conflicts."""
    keda = {"autoscaling": {"mode": "keda"}, **MONITORED}
    results = run_steps(
        [
            helm_apply("worker", keda),
            hpa_scales_to(4),
            helm_apply("worker", {**keda, **RESTORE}),
            helm_apply("worker", keda),
        ]
    )
    assert _refused_or_conflicting(results) == [False] * 4, results
    assert results[3]["spec"]["replicas"] == 4  # KEDA's count, untouched by Helm


def test_a_worker_count_over_an_autoscalers_conflicts_unless_forced(run_steps):
    """Restore mode in hpa mode (the HPA cannot go to 0, so the chart writes 0), and autoscaling
    switched off (the chart writes worker.replicaCount): both set the replicas the HPA controller
    last changed, a conflict Helm reports and does not apply unless `--force-conflicts`
    (docs/deployment.md says when to add it). Helm 3's client-side patch has no conflicts."""
    hpa = {"autoscaling": {"mode": "hpa"}, **MONITORED}
    for target, written in (({**hpa, **RESTORE}, 0), ({"autoscaling": {"mode": "none"}}, 2)):
        steps = [helm_apply("worker", hpa), hpa_scales_to(4)]
        refused = run_steps([*steps, helm_apply("worker", target)])[2]
        assert 'conflict with "kube-controller-manager"' in refused["conflicts"], refused
        assert ".spec.replicas" in refused["conflicts"], refused
        forced = run_steps([*steps, helm_apply("worker", target, force=True)])[2]
        assert not forced["conflicts"] and forced["spec"]["replicas"] == written, forced


def test_switching_autoscaling_on_takes_the_workers_to_one_for_a_moment(run_steps):
    """From autoscaling.mode none (Helm wrote worker.replicaCount, 2) to keda: the chart stops
    writing the count, so the apply removes Helm's replicas and the API server's default, 1,
    applies until KEDA scales on the backlog (Kubernetes' docs on migrating to autoscaling: a
    one-time drop). docs/deployment.md says so."""
    results = run_steps([helm_apply("worker"), helm_apply("worker", {"autoscaling": {"mode": "keda"}, **MONITORED})])
    assert results[0]["spec"]["replicas"] == 2
    assert results[1]["spec"]["replicas"] == 1, results
