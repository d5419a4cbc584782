"""The input formats the loader recognises, by their column names.

Each format maps its own column names onto the canonical ones (see :mod:`atx_analysis.normalize`).
Detection looks only at the header, case-insensitively, ignoring surrounding spaces and taking a
space for an underscore (the SODA names written as words, ``Traffic Report Status``, are the SODA
names); columns a format does not know (SODA's ``:@computed_region_*`` and the like) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import DataFormatError


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    columns: dict[str, str]  # source column name -> canonical name
    required: tuple[str, ...]  # source names that must all be present

    def expected(self) -> str:
        return ", ".join(self.columns)


# the portal's CSV export: its ten columns, in its order (the sample generator writes them so too)
PORTAL_COLUMNS = {
    "Traffic Report ID": "report_id",
    "Published Date": "published",
    "Issue Reported": "issue",
    "Location": "location",
    "Latitude": "latitude",
    "Longitude": "longitude",
    "Address": "address",
    "Status": "status",
    "Status Date": "status_date",
    "Agency": "agency",
}
PORTAL_10 = Format(
    "portal-csv",
    "portal CSV export (10 columns)",
    PORTAL_COLUMNS,
    tuple(PORTAL_COLUMNS),
)
PORTAL_9 = Format(
    "portal-csv-9",
    "older portal CSV export (9 columns, no Agency)",
    {k: v for k, v in PORTAL_10.columns.items() if k != "Agency"},
    tuple(c for c in PORTAL_10.required if c != "Agency"),
)
SODA = Format(
    "soda",
    "SODA API (snake_case; any subset of the columns, as with $select)",
    {
        "traffic_report_id": "report_id",
        "published_date": "published",
        "issue_reported": "issue",
        "location": "location",
        "latitude": "latitude",
        "longitude": "longitude",
        "address": "address",
        "traffic_report_status": "status",
        "traffic_report_status_date_time": "status_date",
        "agency": "agency",
    },
    (),
)
TUTORIAL = Format(
    "tutorial-csv",
    "the tutorial's simplified CSV",
    {"date": "published", "Location": "address", "Issue_Report": "issue", "ResponseTime": "response_minutes"},
    ("date", "Location", "Issue_Report", "ResponseTime"),
)
FORMATS = (PORTAL_10, PORTAL_9, TUTORIAL, SODA)


_SEPARATORS = re.compile(r"[\s_]+")


def _key(name: str) -> str:
    """A header name as detection compares it: a portal export headed with the API's names as words
    (``Traffic Report Status``, ``Traffic Report Status Date Time``) was refused as a portal export
    lacking ``Status`` and ``Status Date``."""
    return _SEPARATORS.sub("_", str(name).strip().lower())


def expected_columns_message() -> str:
    return "; ".join(f"{f.title}: {f.expected()}" for f in FORMATS)


def detect(columns: list[str]) -> tuple[Format, dict[str, str]]:
    """Pick the format from a header; return it and {actual column name: canonical name}."""
    present = {_key(c): c for c in columns}
    for fmt in (PORTAL_10, PORTAL_9, TUTORIAL):
        if all(_key(r) in present for r in fmt.required):
            return fmt, {present[_key(src)]: dst for src, dst in fmt.columns.items() if _key(src) in present}
    soda = {present[_key(src)]: dst for src, dst in SODA.columns.items() if _key(src) in present}
    near = [
        f
        for f in (PORTAL_10, TUTORIAL)
        if any(_key(r) in present for r in f.required if _key(r) not in {_key(s) for s in SODA.columns})
    ]
    if soda and not near:
        return SODA, soda
    if near:
        fmt = near[0]
        missing = [r for r in (PORTAL_9.required if fmt is PORTAL_10 else fmt.required) if _key(r) not in present]
        # the tutorial's title has its own article ("the tutorial's ..."): it read "looks like the the"
        title = fmt.title if fmt.title.startswith("the ") else f"the {fmt.title}"
        raise DataFormatError(f"looks like {title} but lacks columns: {', '.join(missing)}; expected: {fmt.expected()}")
    shown = ", ".join(str(c) for c in list(columns)[:12]) or "(none)"
    raise DataFormatError(
        f"unrecognised columns [{shown}]; expected one of these formats: {expected_columns_message()}"
    )
