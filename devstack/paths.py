"""Where things are in a checkout: the repository root, the bundled sample, the venv's scripts."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"
# The console scripts (jobqueue-api, jobqueue-worker, jobqueue) of the running interpreter's venv.
BIN = Path(sys.executable).parent
