"""The KEDA/HPA model behind observability/simulate_autoscaling.py and docs/autoscaling.md."""

from __future__ import annotations

from dataclasses import replace

import pytest

from observability.simulate_autoscaling import Policy, Workload, desired_replicas, main, simulate

POLICY = Policy(
    threshold=5,
    activation_threshold=0,
    min_replicas=0,
    max_replicas=10,
    polling_interval=15,
    cooldown_period=120,
    scale_down_stabilization=60,
)


@pytest.mark.parametrize(
    "metric, current, expected",
    [
        (0, 0, 0),  # nothing to do, stays at zero
        (1, 0, 1),  # above activation 0: wakes up, ceil(1/5) = 1
        (23, 1, 5),  # ceil(23 / 5)
        (1000, 3, 10),  # clamped to max
        (0, 4, 1),  # empty while active: the HPA floor is 1; zero only after the cooldown
        (26, 5, 5),  # 26 / (5*5) = 1.04: inside the 10% tolerance, no change
        (28, 5, 6),  # 1.12: outside it
    ],
)
def test_desired_replicas(metric, current, expected):
    assert desired_replicas(metric, POLICY, current) == expected


def test_activation_threshold_holds_zero_replicas_below_it():
    policy = replace(POLICY, activation_threshold=10)
    assert desired_replicas(10, policy, 0) == 0
    assert desired_replicas(11, policy, 0) == 3
    assert desired_replicas(3, policy, 2) == 1  # once active, the activation threshold no longer applies


def test_min_replicas_is_the_floor():
    assert desired_replicas(0, replace(POLICY, min_replicas=2), 0) == 2


def test_a_burst_drains_within_bounds_and_scales_back_to_zero():
    work = Workload(jobs=200, job_seconds=2, startup_seconds=20, scrape_interval=15)
    trace = simulate(POLICY, work)
    assert trace.drained_at is not None
    assert max(trace.replicas) == POLICY.max_replicas
    assert all(0 <= r <= POLICY.max_replicas for r in trace.replicas)
    # lower bound: 200 jobs x 2 s over at most 10 workers, after the first pod's start
    assert trace.drained_at >= work.startup_seconds + 200 * 2 / 10
    assert trace.zero_at is not None and trace.zero_at - trace.drained_at >= POLICY.cooldown_period - 30
    assert trace.replicas[-1] == 0


def test_more_replicas_drain_faster_and_a_lower_threshold_never_drains_slower():
    work = Workload(jobs=60, job_seconds=2, startup_seconds=20, scrape_interval=15)
    small = simulate(replace(POLICY, max_replicas=2), work)
    large = simulate(replace(POLICY, max_replicas=20), work)
    assert large.drained_at < small.drained_at
    eager = simulate(replace(POLICY, threshold=2), work)
    lazy = simulate(replace(POLICY, threshold=20), work)
    assert eager.drained_at <= lazy.drained_at
    assert eager.replica_seconds >= lazy.replica_seconds


def test_activation_threshold_above_the_backlog_strands_it_at_zero_replicas():
    """Why the chart keeps activationThreshold 0 with minReplicas 0 (JobQueueBacklogNoBusyWorker)."""
    trace = simulate(replace(POLICY, activation_threshold=20), Workload(jobs=5, horizon=600))
    assert trace.drained_at is None and max(trace.replicas) == 0


def test_cli_prints_timeline_and_writes_the_plot(tmp_path, capsys):
    out = tmp_path / "plot.png"
    assert main(["--jobs", "30", "--plot", str(out), "--sweep"]) == 0
    text = capsys.readouterr().out
    assert "chart defaults" in text and "drained" in text and "| burst |" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_whose_flags_change_the_charts_values_is_not_called_chart_defaults(capsys):
    """docs/autoscaling.md's sweep (`--min-replicas 0`) printed "chart defaults (threshold 20, min 0,
    ...)" while the chart's minReplicas is 1: the label names this run's values as the chart's."""
    assert main(["--jobs", "30", "--plot", "", "--min-replicas", "0"]) == 0
    text = capsys.readouterr().out
    assert "chart defaults" not in text and "this run (threshold 20, min 0, max 10)" in text
    assert main(["--jobs", "30", "--plot", ""]) == 0
    assert "chart defaults (threshold 20, min 1, max 10)" in capsys.readouterr().out


def test_the_docs_results_table_is_what_the_model_gives():
    """docs/autoscaling.md's burst of 100 plot jobs: every row's figures are the model's for the
    policy the row names. Its KEDA-defaults row showed threshold 5's figures (peak 10, 52.7
    replica-minutes) beside threshold 20 rows, while the sweep command it documents prints peak 5,
    27.0 for that row."""
    import re

    from devstack.paths import REPO_ROOT

    text = (REPO_ROOT / "docs" / "autoscaling.md").read_text()
    section = text.split("A burst of 100 plot jobs", 1)[1].split("\n\n", 2)[1].replace("**", "")
    rows = re.findall(r"^\| (.+?) \| (\d+) s \| (\d+) \| ([\d.]+) \|$", section, re.M)
    base = replace(POLICY, threshold=20)  # the chart's timings, as the table's rows state
    keda = {"polling_interval": 30, "cooldown_period": 300, "scale_down_stabilization": 300}
    policies = {
        "earlier chart values (threshold 5, min 0)": replace(base, threshold=5),
        "recommended (threshold 20, min 1)": replace(base, min_replicas=1),
        "threshold 20, min 0": base,
        "threshold 50, min 0": replace(base, threshold=50),
        "threshold 200, min 0": replace(base, threshold=200),
        "max 20 replicas (threshold 5)": replace(base, threshold=5, max_replicas=20),
        "KEDA's own defaults (polling 30 s, cooldown 300 s, HPA stabilization 300 s; threshold 20, min 0)": replace(
            base, **keda
        ),
    }
    assert [r[0] for r in rows] == list(policies), "a row of the table has no policy in this test"
    work = Workload(jobs=100, job_seconds=0.8, startup_seconds=15, scrape_interval=15)
    for label, drained, peak, minutes in rows:
        trace = simulate(policies[label], work)
        shown = (int(drained), int(peak), minutes)
        real = (trace.drained_at, trace.peak_replicas, f"{trace.replica_seconds / 60:.1f}")
        assert shown == real, f"{label}: the docs show {shown}, the model gives {real}"
