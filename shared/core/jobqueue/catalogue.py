"""The operations a deployment offers: the analysis registry, plus ``sleep`` when diagnostics are on.

API and worker both call :func:`catalogue` so they always agree on what may be submitted.
"""

from __future__ import annotations

import time

from atx_analysis.registry import REGISTRY, Operation, Param, Registry

from .settings import Settings

SLEEP_MAX_SECONDS = 60.0


def _sleep(seconds: float) -> dict[str, float]:
    if seconds > 0:
        time.sleep(seconds)
    return {"slept": seconds}


SLEEP = Operation(
    name="sleep",
    func=_sleep,
    description="Diagnostic: sleep for a while and return (seconds 0 is the no-op job). "
    "Only offered when DIAGNOSTIC_OPERATIONS=1.",
    params=(
        Param(
            "seconds", "number", "how long to sleep", default=0.0, minimum=0.0, maximum=SLEEP_MAX_SECONDS, example=0.5
        ),
    ),
    result_keys=("slept",),
    needs_dataset=False,
)


def catalogue(settings: Settings) -> Registry:
    import atx_analysis.operations  # noqa: F401  (fills REGISTRY)

    return REGISTRY.merged(SLEEP) if settings.diagnostic_operations else REGISTRY.merged()
