"""helm test: submit one job through the API Service and wait for its result.

Fails (exit 1) unless the job reaches `complete` with a result within TEST_TIMEOUT_SECONDS, so a
green `helm test` means API, Redis, queue, workers and data all work together."""

import json
import os
import sys
import time

import requests

base = os.environ["API_URL"].rstrip("/")
operation = os.environ.get("TEST_OPERATION", "unique_issues")
params = json.loads(os.environ.get("TEST_PARAMS") or "{}")
deadline = time.monotonic() + float(os.environ.get("TEST_TIMEOUT_SECONDS", "120"))
# the admin token, else (named tokens only: API_TOKENS is name:token,... or one a line) the first user's
named = [
    e.partition(":")[2].strip()
    for e in os.environ.get("API_TOKENS", "").replace("\n", ",").split(",")
    if e.partition(":")[2].strip()
]
token = os.environ.get("API_TOKEN", "").strip() or (named[0] if named else "")
headers = {"Authorization": f"Bearer {token}"} if token else {}

while True:
    try:
        ready = requests.get(f"{base}/readyz", timeout=5)
        if ready.status_code == 200:
            break
        print(f"readyz: {ready.status_code}", flush=True)
    except requests.RequestException as exc:
        print(f"readyz: {exc}", flush=True)
    if time.monotonic() > deadline:
        sys.exit("the API never became ready")
    time.sleep(2)

response = requests.post(f"{base}/submit", json={"operation": operation, "params": params}, headers=headers, timeout=10)
print(f"submit: {response.status_code} {response.text}", flush=True)
if response.status_code != 202:
    sys.exit("submit was not accepted")
job_id = response.json()["job_id"]

while time.monotonic() < deadline:
    job = requests.get(f"{base}/status/{job_id}", headers=headers, timeout=10).json()
    status = job.get("status")
    if status == "complete":
        if not job.get("result"):
            sys.exit(f"job {job_id} completed without a result: {job}")
        print(f"job {job_id} complete: {job['result']}", flush=True)
        sys.exit(0)
    if status in ("failed", "cancelled"):
        sys.exit(f"job {job_id} ended {status}: {job}")
    time.sleep(1)
sys.exit(f"job {job_id} still {status} after the timeout (are workers running and the data loaded?)")
