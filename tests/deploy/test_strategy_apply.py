"""The chart's spec.strategy as the API server merges it, revision after revision, when Helm 4
applies server-side (its default for a new release: docs/deployment.md, "Which patch Helm sends").

ssa/main.go runs the API server's own merge library, structured-merge-diff (Debian's
golang-k8s-sigs-structured-merge-diff-dev), for the field manager "helm", with the API server's
defaulting after each revision and its one validation rule on the strategy. What it shows: a field
the API server defaulted belongs to no manager and is never removed by an apply; a field the
chart applied before and leaves out now is (Updater.prune). So the chart writes the default
strategy out in full, and a switch to Recreate later clears rollingUpdate; a release whose
first render had no strategy keeps the defaulted rollingUpdate and the switch is refused, the case
docs/deployment.md gives two upgrades for (openshift/cluster-network-operator#3121 met the same:
"SSA cannot remove fields it does not own").
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

pytestmark = pytest.mark.skipif(
    not (shutil.which("go") and SMD.is_dir()),
    reason="no Go or structured-merge-diff (scripts/bootstrap.sh installs golang-go and "
    "golang-k8s-sigs-structured-merge-diff-dev)",
)


@pytest.fixture(scope="module")
def apply_revisions(tmp_path_factory):
    """Build ssa/main.go against Debian's structured-merge-diff (a GOPATH of links, no network)
    and return a function: rendered strategies, one per revision -> what the API server made of each."""
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

    def run(strategies: list) -> list[dict]:
        done = subprocess.run([str(binary)], input=json.dumps(strategies), capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    return run


def rendered(component: str, strategy: dict | None) -> dict:
    """spec.strategy of the component's Deployment as the chart renders it from these values."""
    values = {} if strategy is None else {component: {"strategy": strategy}}
    return one(render_objects(values), "Deployment", component)["spec"]["strategy"]


@pytest.mark.parametrize("component", ["api", "worker"])
def test_a_release_installed_with_defaults_can_switch_to_recreate(apply_revisions, component):
    revisions = [rendered(component, None), rendered(component, {"type": "Recreate"})]
    first, second = apply_revisions(revisions)
    assert not first["refused"] and not second["refused"], (first, second)
    assert second["merged"]["type"] == "Recreate"
    assert second["merged"].get("rollingUpdate") is None, second


@pytest.mark.parametrize("component", ["api", "worker"])
def test_back_and_forth_between_the_strategies(apply_revisions, component):
    """Default, Recreate, default again, a partial rollingUpdate (the other field's default filled
    in by the chart), Recreate again: every revision accepted, each with what it asked for."""
    asked = [None, {"type": "Recreate"}, None, {"rollingUpdate": {"maxSurge": 0}}, {"type": "Recreate"}]
    results = apply_revisions([rendered(component, s) for s in asked])
    assert [r["refused"] for r in results] == [False] * len(asked), results
    assert results[2]["merged"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert results[3]["merged"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": "25%"}
    assert results[4]["merged"].get("rollingUpdate") is None, results[4]


def test_a_release_whose_first_render_had_no_strategy_is_refused(apply_revisions):
    """Charts before this one rendered no strategy for empty values: the API server's defaulted
    rollingUpdate is nobody's, the apply of Recreate keeps it, and the API server refuses the
    revision. The rendered rollingUpdate: null does not help server-side (it only makes Helm own the
    key)."""
    first, second = apply_revisions([None, rendered("worker", {"type": "Recreate"})])
    assert not first["refused"]
    assert second["refused"], second
    assert second["merged"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}


def test_such_a_release_switches_after_one_upgrade_to_this_chart(apply_revisions):
    """docs/deployment.md's way out: upgrade to this chart with the default strategy first (Helm
    applies the live values and owns them from then on), then to Recreate."""
    results = apply_revisions([None, rendered("worker", None), rendered("worker", {"type": "Recreate"})])
    assert [r["refused"] for r in results] == [False, False, False], results
    assert results[2]["merged"].get("rollingUpdate") is None, results[2]
