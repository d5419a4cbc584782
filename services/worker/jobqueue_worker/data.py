"""The dataset a worker process analyses: loaded once, on first need, waiting for the file to appear.

A pod may start before its data volume is filled, so a missing file is logged and retried with
backoff rather than crashing the worker; a file the loader refuses is logged and loaded again once
it changes. Jobs that do not need data (``sleep``) never load it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
from collections.abc import Callable

log = logging.getLogger("jobqueue.worker.data")

# How often a worker whose data file the loader refused looks at it again (one stat each time), as
# the API does (jobqueue_api.state.DATA_RETRY_SECONDS).
REFUSED_LOOK_SECONDS = 3.0


class DataSource:
    def __init__(self, path: str, should_stop: Callable[[], bool] = lambda: False, **load_options: Any):
        self.path = path
        self.load_options = load_options  # Settings.data_options(): DATA_CACHE_DIR/_MODE, DATA_MAX_BYTES
        self.should_stop = should_stop
        self._dataset: Any = None

    @property
    def loaded(self) -> bool:
        return self._dataset is not None

    @property
    def identity(self) -> str | None:
        return getattr(self._dataset, "identity", None) if self._dataset is not None else None

    def get(self) -> Any:
        if self._dataset is None:
            self._dataset = self._load()
        return self._dataset

    def _load_when_readable(self, load_dataset: Callable[..., Any]) -> Any:
        """Load the file; one the loader refuses is waited on until it changes (and then holds still,
        ``atx_analysis.cache.worth_retrying``), as a missing one is waited for. The worker used to exit on it: under make up
        nothing started it again, so after the user fixed the file the API took jobs nobody ran."""
        from atx_analysis.cache import file_stamp, worth_retrying

        while True:
            failed_on = file_stamp(self.path)
            try:
                return load_dataset(self.path, **self.load_options)
            except Exception as exc:
                if not os.path.exists(self.path):
                    raise
                log.error(
                    "data file refused; waiting for it to change",
                    extra={"data_path": self.path, "error": str(exc), "checked_every": REFUSED_LOOK_SECONDS},
                )
            while not worth_retrying(self.path, failed_on):
                if self.should_stop():
                    raise RuntimeError(f"stopping while the data file {self.path} is refused")
                time.sleep(REFUSED_LOOK_SECONDS)

    def _load(self) -> Any:
        from atx_analysis.dataset import load_dataset  # the analysis package; imported only when data is needed
        from atx_analysis.datapath import odd_path, refuse_url

        # a URL (the portal's address, file:///...) is never a file that appears: the API refused it
        # at once while the worker waited for a file named "https:/..." for ever, its jobs with it
        refuse_url(self.path)
        delay = 0.5
        while not os.path.exists(self.path):
            if self.should_stop():
                raise RuntimeError(f"stopping before the data file {self.path} appeared")
            # the folder too: a worker started outside the checkout waited for the default relative
            # path forever, its log naming only "data/traffic_incidents_sample.csv"
            # a '~' or a space around the name is waited for too (a volume may bring such a file), but
            # the log says what the API's error says: without it the path looked like the one meant
            odd = odd_path(self.path)
            log.warning(
                "data file not found; waiting for it",
                extra={
                    "data_path": self.path,
                    "looked_for": os.path.abspath(self.path),
                    "retry_in": delay,
                    **({"note": f"{odd[0]}: {odd[1]}"} if odd else {}),
                },
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        started = time.monotonic()
        dataset = self._load_when_readable(load_dataset)
        log.info(
            "dataset loaded",
            extra={
                "data_path": self.path,
                "seconds": round(time.monotonic() - started, 3),
                "identity": getattr(dataset, "identity", None),
                "rows": getattr(dataset, "rows", None),
                "from_cache": getattr(dataset, "from_cache", None),
                "cache_file": getattr(dataset, "cache_file", None),
            },
        )
        if hasattr(dataset, "date_warning") and (warning := dataset.date_warning()):
            log.warning("dataset dates unusable", extra={"data_path": self.path, "detail": warning})
        if hasattr(dataset, "reading_warning") and (guess := dataset.reading_warning()):
            log.warning("dataset dates guessed", extra={"data_path": self.path, "detail": guess})
        return dataset
