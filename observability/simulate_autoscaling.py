"""Simulate KEDA + HPA scaling the workers through a burst of jobs, to choose the chart's defaults.

A one-second-step model of what happens in a cluster (docs/autoscaling.md explains it):

* The burst lands at t=0, half a period before the next Prometheus scrape, KEDA poll and HPA
  sync (the average case; a burst just after each of them waits a full period more).
* Prometheus scrapes the backlog (waiting + running jobs) every ``scrape_interval`` seconds.
* KEDA polls every ``polling_interval``: above ``activation_threshold`` it wakes a scaled-to-zero
  Deployment to one replica; after ``cooldown_period`` seconds at or below it, it scales to zero.
* The HPA KEDA creates runs every 15 s: desired = ceil(backlog / threshold) (an AverageValue
  target), inside a 10% tolerance, clamped to [max(1, min), max], scale-up at most
  max(4 pods, +100%) per 15 s, scale-down to the highest desire of the last
  ``scale_down_stabilization`` seconds.
* A new pod runs jobs ``startup_seconds`` after it is created; each runs one job at a time,
  ``job_seconds`` each (so 1/job_seconds jobs per second per worker).

``desired_replicas`` is the formula alone; the end-to-end test uses it to check what the chart's
values make KEDA ask for. Run ``python -m observability.simulate_autoscaling --help``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from observability.rules import REPO_ROOT

VALUES_FILE = REPO_ROOT / "helm" / "atx-jobqueue" / "values.yaml"
PLOT_FILE = REPO_ROOT / "docs" / "img" / "autoscaling.png"

HPA_SYNC_SECONDS = 15  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
HPA_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
HPA_SCALE_UP_PODS = 4  # default scaleUp policies: 4 pods or 100% per 15 s, the larger
HPA_SCALE_UP_PERCENT = 100


@dataclass(frozen=True)
class Policy:
    """The autoscaling settings the chart exposes (autoscaling.* in values.yaml)."""

    threshold: float = 5
    activation_threshold: float = 0
    min_replicas: int = 0
    max_replicas: int = 10
    polling_interval: int = 15
    cooldown_period: int = 120
    scale_down_stabilization: int = 60


@dataclass(frozen=True)
class Workload:
    jobs: int = 100  # the burst, all submitted at t=0
    job_seconds: float = 0.8  # run time of one job: plot_daily_counts, measured (docs/autoscaling.md)
    startup_seconds: float = 15.0  # pod created -> first job taken: 5-7 s measured + ~8 s assumed scheduling
    scrape_interval: int = 15  # metrics.serviceMonitor.interval
    horizon: int = 1800  # seconds simulated at most


@dataclass
class Trace:
    t: list[int] = field(default_factory=list)
    backlog: list[float] = field(default_factory=list)  # waiting + running jobs, the true value
    replicas: list[int] = field(default_factory=list)  # desired by the Deployment
    ready: list[int] = field(default_factory=list)  # pods taking jobs
    drained_at: int | None = None  # first second the backlog is empty
    zero_at: int | None = None  # first second back at zero replicas after draining

    @property
    def peak_replicas(self) -> int:
        return max(self.replicas, default=0)

    @property
    def replica_seconds(self) -> int:
        return sum(self.replicas)


def desired_replicas(metric: float, policy: Policy, current: int) -> int:
    """What KEDA + HPA aim for given the backlog ``metric`` and ``current`` replicas (no rate limits).

    Zero replicas stay zero until the metric exceeds the activation threshold (KEDA); from then on
    the HPA's ceil(metric / threshold), kept within the tolerance and clamped to
    [max(1, min), max]. Scaling back to zero needs the cooldown, which this function does not see:
    at or below the activation threshold it returns the floor (min, or 1 while active).
    """
    floor = max(1, policy.min_replicas)
    if current == 0 and policy.min_replicas == 0:
        if metric <= policy.activation_threshold:
            return 0
        current = 1
    raw = math.ceil(metric / policy.threshold) if metric > 0 else 0
    if current > 0 and abs(metric / (policy.threshold * current) - 1) <= HPA_TOLERANCE:
        raw = current
    return max(floor, min(policy.max_replicas, raw))


def simulate(policy: Policy, work: Workload) -> Trace:
    trace = Trace()
    remaining = float(work.jobs)  # waiting + running: exactly the backlog the query reports
    replicas = policy.min_replicas
    pod_ready_at: list[float] = [0.0] * replicas  # pods present from the start are ready
    scraped = 0.0
    history: list[tuple[int, int]] = []  # (time, HPA recommendation) for scale-down stabilization
    last_active = -(10**9)
    for t in range(work.horizon + 1):
        if t % work.scrape_interval == work.scrape_interval // 2:
            scraped = remaining
        # KEDA: activation and scale to zero, every polling interval
        if t % policy.polling_interval == policy.polling_interval // 2:
            if scraped > policy.activation_threshold:
                last_active = t
                if replicas == 0:
                    replicas = max(1, policy.min_replicas)
            elif replicas > 0 and policy.min_replicas == 0 and t - last_active >= policy.cooldown_period:
                replicas = 0
                history.clear()
        # HPA, while KEDA keeps the Deployment active
        if replicas > 0 and t % HPA_SYNC_SECONDS == HPA_SYNC_SECONDS // 2:
            want = desired_replicas(scraped, policy, replicas)
            history.append((t, want))
            history[:] = [(ts, w) for ts, w in history if t - ts <= policy.scale_down_stabilization]
            if want > replicas:
                replicas = min(want, replicas + max(HPA_SCALE_UP_PODS, replicas * HPA_SCALE_UP_PERCENT // 100))
            elif want < replicas:
                replicas = max(w for _, w in history)
        # pods follow the Deployment: new ones start, removed ones go (newest first)
        while len(pod_ready_at) < replicas:
            pod_ready_at.append(t + work.startup_seconds)
        del pod_ready_at[replicas:]
        ready = sum(1 for r in pod_ready_at if r <= t)
        # one second of work: each ready worker finishes 1/job_seconds jobs
        remaining = max(0.0, remaining - ready / work.job_seconds)
        backlog = remaining
        trace.t.append(t)
        trace.backlog.append(backlog)
        trace.replicas.append(replicas)
        trace.ready.append(ready)
        if trace.drained_at is None and backlog <= 1e-9:
            trace.drained_at = t
        if trace.drained_at is not None and trace.zero_at is None and replicas == policy.min_replicas:
            trace.zero_at = t
            break
    return trace


# --- chart values -------------------------------------------------------------------------------
def load_values(path: Path = VALUES_FILE) -> dict:
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def policy_from_values(values: dict) -> Policy:
    """The chart's autoscaling defaults (autoscaling.* in values.yaml); Policy's defaults if absent."""
    a = values.get("autoscaling") or {}
    keda = a.get("keda") or {}
    base = Policy()
    return Policy(
        threshold=float(a.get("threshold", base.threshold)),
        activation_threshold=float(a.get("activationThreshold", base.activation_threshold)),
        min_replicas=int(a.get("minReplicas", base.min_replicas)),
        max_replicas=int(a.get("maxReplicas", base.max_replicas)),
        polling_interval=int(keda.get("pollingInterval", base.polling_interval)),
        cooldown_period=int(keda.get("cooldownPeriod", base.cooldown_period)),
        scale_down_stabilization=int(keda.get("scaleDownStabilizationSeconds", base.scale_down_stabilization)),
    )


def scrape_interval_from_values(values: dict, default: int = 15) -> int:
    raw = str(((values.get("metrics") or {}).get("serviceMonitor") or {}).get("interval", f"{default}s"))
    match = re.fullmatch(r"(\d+)s", raw)
    return int(match.group(1)) if match else default


# --- report ---------------------------------------------------------------------------------------
def describe(name: str, policy: Policy, trace: Trace) -> str:
    drained = f"{trace.drained_at} s" if trace.drained_at is not None else "not drained"
    zero = f"{trace.zero_at} s" if trace.zero_at is not None else "-"
    return (
        f"{name:<46} threshold={policy.threshold:<4g} min={policy.min_replicas} max={policy.max_replicas:<3} "
        f"drained {drained:>12}  peak {trace.peak_replicas:>3} replicas  "
        f"{trace.replica_seconds / 60:7.1f} replica-min  back to min at {zero}"
    )


def plot(results: list[tuple[str, Policy, Trace]], work: Workload, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_q, ax_r) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for i, (name, _policy, trace) in enumerate(results):
        style = {"linewidth": 2.5 if i == 0 else 1.2, "linestyle": "-" if i == 0 else "--"}
        ax_q.plot(trace.t, trace.backlog, label=name, **style)
        ax_r.step(trace.t, trace.replicas, where="post", label=name, **style)
    ax_q.set_ylabel("backlog (waiting + running jobs)")
    ax_q.set_title(
        f"Burst of {work.jobs} jobs of {work.job_seconds:g} s; pods start in {work.startup_seconds:g} s, "
        f"scrape every {work.scrape_interval} s"
    )
    ax_q.legend(fontsize=8)
    ax_q.grid(alpha=0.3)
    ax_r.set_ylabel("worker replicas")
    ax_r.set_xlabel("seconds after the burst")
    ax_r.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    values = load_values()
    chart = policy_from_values(values)
    parser = argparse.ArgumentParser(description="Simulate KEDA scaling the workers through a burst of jobs.")
    parser.add_argument("--jobs", type=int, default=Workload.jobs, help="jobs in the burst")
    parser.add_argument("--job-seconds", type=float, default=Workload.job_seconds, help="run time of one job")
    parser.add_argument(
        "--startup-seconds", type=float, default=Workload.startup_seconds, help="pod start to first job"
    )
    parser.add_argument(
        "--scrape-interval",
        type=int,
        default=scrape_interval_from_values(values),
        help="seconds between Prometheus scrapes (default: the chart's metrics.serviceMonitor.interval)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=chart.threshold,
        help="backlog per replica (default: the chart's autoscaling.threshold)",
    )
    parser.add_argument(
        "--activation-threshold",
        type=float,
        default=chart.activation_threshold,
        help="backlog that wakes a Deployment at zero (chart: autoscaling.activationThreshold)",
    )
    parser.add_argument(
        "--min-replicas",
        type=int,
        default=chart.min_replicas,
        help="chart: minReplicas (0 scales to zero)",
    )
    parser.add_argument(
        "--max-replicas",
        type=int,
        default=chart.max_replicas,
        help="chart: maxReplicas",
    )
    parser.add_argument(
        "--polling-interval",
        type=int,
        default=chart.polling_interval,
        help="seconds between KEDA's queries (chart: autoscaling.keda.pollingInterval)",
    )
    parser.add_argument(
        "--cooldown-period",
        type=int,
        default=chart.cooldown_period,
        help="seconds idle before scaling to zero (chart: autoscaling.keda.cooldownPeriod)",
    )
    parser.add_argument(
        "--scale-down-stabilization",
        type=int,
        default=chart.scale_down_stabilization,
        help="seconds of wishes a scale-down looks back over (chart: autoscaling.keda.scaleDownStabilizationSeconds)",
    )
    parser.add_argument("--plot", default=str(PLOT_FILE), help="PNG to write ('' for none)")
    parser.add_argument("--every", type=int, default=15, help="print the timeline every N seconds")
    parser.add_argument("--sweep", action="store_true", help="also print burst size x threshold as a table")
    args = parser.parse_args(argv)

    policy = Policy(
        args.threshold,
        args.activation_threshold,
        args.min_replicas,
        args.max_replicas,
        args.polling_interval,
        args.cooldown_period,
        args.scale_down_stabilization,
    )
    work = Workload(
        jobs=args.jobs,
        job_seconds=args.job_seconds,
        startup_seconds=args.startup_seconds,
        scrape_interval=args.scrape_interval,
    )
    trace = simulate(policy, work)
    print(f"policy: {policy}\nworkload: {work}\n")
    print("    t  waiting  replicas  ready")
    for i in range(0, len(trace.t), args.every):
        print(f"{trace.t[i]:5d}  {trace.backlog[i]:7.0f}  {trace.replicas[i]:8d}  {trace.ready[i]:5d}")
    print()
    one_worker = work.jobs * work.job_seconds
    print(
        f"one worker alone would need {one_worker:.0f} s; "
        f"{policy.max_replicas} ready workers from t=0 would need {one_worker / policy.max_replicas:.0f} s\n"
    )

    results = [(name, p, trace if p == policy else simulate(p, work)) for name, p in variants(policy, chart)]
    for name, p, tr in results:
        print(describe(name, p, tr))
    if args.sweep:
        print()
        print(sweep(policy, work))
    if args.plot:
        shown = [r for r in results if not r[0].startswith(("threshold 20", "max "))]
        plot(shown, work, Path(args.plot))
        print(f"\nwrote {args.plot}")
    return 0


# What docs/autoscaling.md argues for (threshold from the sweep's knee, one warm worker).
RECOMMENDED = Policy(
    threshold=20,
    activation_threshold=0,
    min_replicas=1,
    max_replicas=10,
    polling_interval=15,
    cooldown_period=120,
    scale_down_stabilization=60,
)


def variants(policy: Policy, chart: Policy | None = None) -> list[tuple[str, Policy]]:
    """The policy of this run (the chart's, unless flags changed it) and the alternatives the docs
    compare it with."""
    # the legend names the values, so a stale image shows itself (it once said "chart defaults" while
    # drawing values the chart had since changed); a run whose flags change the chart's values (the
    # docs' sweep, --min-replicas 0) is "this run", not "chart defaults": it printed "chart defaults
    # (threshold 20, min 0, ...)" while the chart's minReplicas is 1
    own = "chart defaults" if chart is None or policy == chart else "this run"
    out = [
        (
            f"{own} (threshold {policy.threshold:g}, min {policy.min_replicas}, max {policy.max_replicas})",
            policy,
        )
    ]
    if policy != RECOMMENDED:
        out.append(("recommended (threshold 20, min 1)", RECOMMENDED))
    for threshold in (5, 20, 50, 200):
        if threshold != policy.threshold:
            out.append((f"threshold {threshold:g}", replace(policy, threshold=threshold)))
    if policy.min_replicas == 0:
        out.append(("min 1 (one warm worker)", replace(policy, min_replicas=1)))
    out.append((f"max {policy.max_replicas * 2} replicas", replace(policy, max_replicas=policy.max_replicas * 2)))
    out.append(
        (
            "polling 30 s, cooldown 300 s (KEDA defaults)",
            replace(policy, polling_interval=30, cooldown_period=300, scale_down_stabilization=300),
        )
    )
    return out


def sweep(policy: Policy, work: Workload, bursts=(10, 50, 200, 1000), thresholds=(5, 20, 50, 200)) -> str:
    """Markdown table: time to drain / replica-minutes for burst sizes x thresholds."""
    lines = [
        "| burst | " + " | ".join(f"threshold {t:g}" for t in thresholds) + " |",
        "| ---: | " + " | ".join("---:" for _ in thresholds) + " |",
    ]
    for n in bursts:
        cells = []
        for t in thresholds:
            tr = simulate(replace(policy, threshold=t), replace(work, jobs=n))
            drained = f"{tr.drained_at} s" if tr.drained_at is not None else "never"
            cells.append(f"{drained}, {tr.replica_seconds / 60:.1f} r-min, peak {tr.peak_replicas}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from jobqueue import pipe

    sys.exit(pipe.run(main))
