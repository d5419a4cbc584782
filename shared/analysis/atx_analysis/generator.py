"""A realistic synthetic dataset in the portal's CSV export format, deterministic for a seed; the
same rows also as the SODA API's JSON or the portal's JSON export (``rows.json``).

The real file cannot be downloaded everywhere (CI has no internet), so this writes one with the
same columns and value formats: the real issue mix in its mixed spelling, Austin roads, points in
the Austin box plus outliers (1.4% of the rows drawn away from it, a tenth of those back inside:
docs/data.md gives the exact counts), ACTIVE/ARCHIVED, agencies cut at 20 characters and empty
in old rows, some status dates in 1970, and ``SHA1_epoch`` report ids that are not always unique.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .formats import PORTAL_COLUMNS, SODA

FULL_ROWS = 432_444
START = pd.Timestamp("2017-09-26 00:00:00", tz="UTC")
END = pd.Timestamp("2026-11-27 00:00:00", tz="UTC")

# (issue as the portal spells it, relative frequency)
ISSUES = [
    ("Crash Urgent", 120),
    ("Traffic Hazard", 95),
    ("Crash Service", 70),
    ("TRFC HAZD/ DEBRIS", 45),
    ("COLLISION", 40),
    ("zSTALLED VEHICLE", 35),
    ("Stalled Vehicle", 30),
    ("COLLISN/ LVNG SCN", 18),
    ("LOOSE LIVESTOCK", 8),
    ("BLOCKED DRIV/ HWY", 12),
    ("COLLISION WITH INJURY", 10),
    ("VEHICLE FIRE", 5),
    ("Traffic Impediment", 9),
    ("N / HZRD TRFC VIOL", 4),
    ("BOAT ACCIDENT", 1),
    ("AUTO/ PED", 3),
    ("FLEET ACC/ INJURY", 2),
    ("COLLISION/PRIVATE PROPERTY", 4),
    ("ICY ROADWAY", 2),
    ("HIGH WATER", 2),
    ("OBSTRUCT HWY", 3),
    ("TRAFFIC FATALITY", 1),
    ("Crash/Injury", 1),
    ("FLEET ACC/ FATAL", 0.3),
]
ROADS = [
    "S CONGRESS AVE",
    "N CONGRESS AVE",
    "N IH 35 SVRD SB",
    "N IH 35 SVRD NB",
    "S IH 35 SVRD SB",
    "S IH 35 SVRD NB",
    "N LAMAR BLVD",
    "S LAMAR BLVD",
    "N MOPAC EXPY SB",
    "S MOPAC EXPY NB",
    "E RIVERSIDE DR",
    "W RIVERSIDE DR",
    "E BEN WHITE BLVD",
    "W BEN WHITE BLVD",
    "BURNET RD",
    "GUADALUPE ST",
    "AIRPORT BLVD",
    "E 7TH ST",
    "W 5TH ST",
    "E CESAR CHAVEZ ST",
    "W 6TH ST",
    "E OLTORF ST",
    "W SLAUGHTER LN",
    "E SLAUGHTER LN",
    "RESEARCH BLVD",
    "N US 183 SVRD",
    "S US 183 HWY",
    "W PARMER LN",
    "E PARMER LN",
    "RUNDBERG LN",
    "E ST ELMO RD",
    "WILLIAM CANNON DR",
    "MANCHACA RD",
    "BRODIE LN",
    "SPRINGDALE RD",
    "MLK JR BLVD",
    "E 51ST ST",
    "W 38TH ST",
    "N FM 620 RD",
    "RANCH RD 2222",
    "BEE CAVE RD",
    "LOOP 360",
    "SH 71 W",
    "E SH 71",
    "DESSAU RD",
    "CAMERON RD",
    "N PLEASANT VALLEY RD",
    "MONTOPOLIS DR",
    "STASSNEY LN",
    "ANDERSON LN",
    "BRAKER LN",
    "HOWARD LN",
    "ED BLUESTEIN BLVD",
    "TECH RIDGE BLVD",
    "MCNEIL DR",
    "ESPERANZA CROSSING",
    "S PLEASANT VALLEY RD",
    "S 1ST ST",
    "N LOOP BLVD",
    "KOENIG LN",
    "W 45TH ST",
    "E 11TH ST",
    "E 12TH ST",
    "W 24TH ST",
    "W 35TH ST",
    "RED RIVER ST",
    "TRINITY ST",
    "SAN JACINTO BLVD",
    "N HIGHLAND MALL BLVD",
    "METRIC BLVD",
    "N MOPAC EXPY NB",
    "S MOPAC EXPY SB",
    "SH 130 NB",
    "SH 130 SB",
    "SH 45 W",
    "W US 290 HWY",
    "E US 290 HWY SVRD",
    "FM 969 RD",
    "DECKER LN",
    "GIVENS AVE",
    "WEBBERVILLE RD",
    "ELROY RD",
    "ONION CREEK PKWY",
    "FM 1626 RD",
    "CONGRESS AVE",
    "LAKE AUSTIN BLVD",
    "ENFIELD RD",
    "EXPOSITION BLVD",
    "WESTLAKE DR",
    "SPICEWOOD SPRINGS RD",
    "JOLLYVILLE RD",
    "GREAT HILLS TRL",
    "ARBORETUM BLVD",
    "DUVAL RD",
    "YAGER LN",
    "WELLS BRANCH PKWY",
    "GRAND AVENUE PKWY",
    "NORWOOD PARK BLVD",
    "GEORGIAN DR",
    "COLONY LOOP DR",
    "LOYOLA LN",
    "JOHNNY MORRIS RD",
    "PEARCE LN",
    "S FIRST ST",
    "SOUTHWEST PKWY",
    "DAVIS LN",
    "ESCARPMENT BLVD",
    "LA CROSSE AVE",
    "MOPAC CIR",
]
ROAD_WEIGHTS = np.linspace(3.0, 0.4, len(ROADS))
AGENCIES = [
    ("AUSTIN PD", 70),
    ("TRAVIS COUNTY SHERIF", 20),
    ("AUSTIN FIRE DEPARTME", 6),
    ("PFLUGERVILLE PD", 2),
    ("TRAVIS COUNTY CONSTA", 1),
    ("CEDAR PARK POLICE DE", 1),
]
# incidents per hour of day (Austin local), rush hours heavier
HOUR_WEIGHTS = np.array([3, 2, 2, 1.5, 1.5, 2.5, 5, 8, 8, 6, 5, 5, 5.5, 5.5, 6, 7.5, 8.5, 9, 7, 5.5, 5, 4.5, 4, 3.5])
COLUMNS = list(PORTAL_COLUMNS)  # the portal export's header, in its order
PORTAL_TS = "%m/%d/%Y %I:%M:%S %p +0000"


def _weights(pairs):
    w = np.array([p[1] for p in pairs], dtype=float)
    return w / w.sum()


def generate_frame(rows: int = FULL_ROWS, seed: int = 332, end: pd.Timestamp = END) -> pd.DataFrame:
    """The portal export as a frame of strings (exactly what the CSV holds)."""
    rng = np.random.default_rng(seed)
    span_days = (end - START).days
    # more recent years are a bit busier; then pick an Austin-local hour with rush-hour weights
    day = np.floor(span_days * rng.power(1.15, rows)).astype(np.int64)
    hour = rng.choice(24, size=rows, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    secs = rng.integers(0, 3600, rows)
    local = (
        pd.Timestamp(START.tz_localize(None))
        + pd.to_timedelta(day, "D")
        + pd.to_timedelta(hour, "h")
        + pd.to_timedelta(secs, "s")
    )
    published = (
        pd.DatetimeIndex(local)
        .tz_localize("America/Chicago", ambiguous=False, nonexistent="shift_forward")
        .tz_convert("UTC")
    )
    order = np.argsort(published.asi8, kind="stable")[::-1]  # newest first, like the portal
    published = published[order]

    issue = np.array([p[0] for p in ISSUES], dtype=object)[rng.choice(len(ISSUES), rows, p=_weights(ISSUES))]
    road_idx = rng.choice(len(ROADS), rows, p=ROAD_WEIGHTS / ROAD_WEIGHTS.sum())
    roads = np.array(ROADS, dtype=object)
    kind = rng.random(rows)
    block = rng.integers(1, 300, rows) * 100
    cross = roads[rng.choice(len(ROADS), rows)]
    address = np.where(
        kind < 0.45,
        [f"{b}-{b + 99} {r}" for b, r in zip(block, roads[road_idx])],
        np.where(
            kind < 0.8,
            roads[road_idx] + " / " + cross,
            np.where(kind < 0.92, roads[road_idx] + " at " + cross, roads[road_idx] + " & " + cross),
        ),
    )
    address = address.astype(object)
    # a few hundred hot spots (interchanges, big intersections) take a fifth of the incidents
    hot = address[rng.choice(rows, min(400, rows), replace=False)]
    is_hot = rng.random(rows) < 0.2
    zipf = 1.0 / np.arange(1, len(hot) + 1) ** 0.7
    address[is_hot] = hot[rng.choice(len(hot), is_hot.sum(), p=zipf / zipf.sum())]
    address[rng.random(rows) < 0.002] = ""

    lat = 30.27 + rng.normal(0, 0.085, rows)
    lon = -97.74 + rng.normal(0, 0.08, rows)
    outlier = rng.random(rows) < 0.014
    lat[outlier] = rng.choice([0.0, 29.42, 32.78, 31.1, 30.27], outlier.sum())
    lon[outlier] = np.where(lat[outlier] == 0.0, 0.0, rng.uniform(-98.6, -96.8, outlier.sum()))
    lat_s = np.char.mod("%.6f", lat).astype(object)
    lon_s = np.char.mod("%.6f", lon).astype(object)
    location = "POINT (" + lon_s + " " + lat_s + ")"
    no_point = rng.random(rows) < 0.003
    for a in (lat_s, lon_s, location):
        a[no_point] = ""

    age_h = np.asarray((end - published).total_seconds()) / 3600
    # recent incidents are still ACTIVE; a few old ones were never closed (as in the real data)
    active = ((age_h < 6) & (rng.random(rows) < 0.8)) | (rng.random(rows) < 0.002)
    status = np.where(active, "ACTIVE", "ARCHIVED").astype(object)
    minutes = np.exp(rng.normal(np.log(40), 0.8, rows))
    stale = rng.random(rows) < 0.01
    minutes[stale] = rng.uniform(8 * 1440, 60 * 1440, stale.sum())
    status_date = published + pd.to_timedelta(np.round(minutes * 60), "s")
    sd = np.array(status_date.strftime(PORTAL_TS), dtype=object)
    epoch = rng.random(rows) < 0.004
    sd[epoch] = "01/01/1970 12:00:00 AM +0000"
    sd[rng.random(rows) < 0.002] = ""

    agency = np.array([a[0] for a in AGENCIES], dtype=object)[rng.choice(len(AGENCIES), rows, p=_weights(AGENCIES))]
    agency[published < pd.Timestamp("2019-01-01", tz="UTC")] = ""

    epoch_s = published.as_unit("s").asi8
    digest = [hashlib.sha1(f"{seed}:{i}".encode()).hexdigest().upper() for i in range(rows)]
    ids = np.array([f"{d}_{e}" for d, e in zip(digest, epoch_s)], dtype=object)
    dup = np.flatnonzero(rng.random(rows) < 0.001)
    ids[dup[1:]] = ids[dup[:-1]]  # a few repeated ids, as in the real data

    return pd.DataFrame(
        {
            "Traffic Report ID": ids,
            "Published Date": pd.Series(published.strftime(PORTAL_TS), dtype=object).to_numpy(),
            "Issue Reported": issue,
            "Location": location,
            "Latitude": lat_s,
            "Longitude": lon_s,
            "Address": address,
            "Status": status,
            "Status Date": sd,
            "Agency": agency,
        },
        columns=COLUMNS,
    )


def write_csv(
    path: str | Path, rows: int = FULL_ROWS, seed: int = 332, nine_columns: bool = False, form: str = "csv"
) -> Path:
    """Write the synthetic export to ``path`` (gzip if it ends in .gz); 9 columns = older export;
    ``form`` csv, or one of JSON_FORMS for the same rows as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_frame(rows, seed)
    if nine_columns:
        frame = frame.drop(columns=["Agency"])
        lat, lon = frame["Latitude"], frame["Longitude"]
        frame["Location"] = np.where(lat == "", "", "(" + lat + "," + lon + ")")
    tmp = path.with_name(path.name + ".tmp")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(tmp, "wt", newline="", encoding="utf-8") as fh:
        if form == "csv":
            frame.to_csv(fh, index=False, lineterminator="\n")
        else:
            write_json(fh, frame, form)
    tmp.replace(path)
    return path


# portal column -> SODA field name, through the canonical name both map to
SODA_FIELDS = {col: next(f for f, c in SODA.columns.items() if c == canon) for col, canon in PORTAL_COLUMNS.items()}
# Socrata's own columns, first in every row of the portal's JSON export
ROWS_EXPORT_OWN = (":sid", ":id", ":position", ":created_at", ":created_meta", ":updated_at", ":updated_meta", ":meta")
JSON_FORMS = ("soda-json", "rows-json")


def _iso(values: pd.Series) -> pd.Series:
    """Portal timestamps as SODA writes them (floating, UTC); a value that is not one stays as it is."""
    parsed = pd.to_datetime(values, format=PORTAL_TS, errors="coerce", utc=True)
    return pd.Series(parsed.dt.strftime("%Y-%m-%dT%H:%M:%S.000"), index=values.index).fillna(values)


def json_rows(frame: pd.DataFrame, form: str):
    """Yield the rows of a portal export frame (strings, "" = missing) as ``form`` writes them:
    ``soda-json`` records leave out missing fields and give the point as GeoJSON, as the SODA API
    does; ``rows-json`` rows are arrays, Socrata's own columns first, the point as WKT text."""
    frame = frame.copy()
    for col in ("Published Date", "Status Date"):
        frame[col] = _iso(frame[col])
    fields = [c for c in PORTAL_COLUMNS if c in frame.columns]
    for i, row in enumerate(frame[fields].itertuples(index=False, name=None)):
        values = dict(zip(fields, row))
        if form == "rows-json":
            own = [f"row-{i}", f"00000000-{i}", 0, 1709688579, None, 1709688579, None, "{ }"]
            yield own + [values[c] or None for c in fields]
            continue
        rec = {SODA_FIELDS[c]: v for c, v in values.items() if v}
        if rec.get("location") and values["Latitude"] and values["Longitude"]:
            rec["location"] = {"type": "Point", "coordinates": [float(values["Longitude"]), float(values["Latitude"])]}
        yield rec


def write_json(fh, frame: pd.DataFrame, form: str) -> None:
    """Write ``frame`` (portal export rows) to the text stream ``fh`` as the SODA API's JSON array
    or the portal's JSON export, ``{"meta": {"view": {"columns": [...]}}, "data": [[...], ...]}``."""
    if form not in JSON_FORMS:
        raise ValueError(f"form must be one of {JSON_FORMS}")
    if form == "rows-json":
        names = [*ROWS_EXPORT_OWN, *(SODA_FIELDS[c] for c in PORTAL_COLUMNS if c in frame.columns)]
        columns = [{"id": -1 if n.startswith(":") else 1000 + i, "fieldName": n} for i, n in enumerate(names)]
        fh.write('{"meta": {"view": {"id": "dx9v-zd7x", "columns": ' + json.dumps(columns) + '}},\n"data": [')
    else:
        fh.write("[")
    for i, row in enumerate(json_rows(frame, form)):
        fh.write(("," if i else "") + "\n" + json.dumps(row))
    fh.write("\n]}\n" if form == "rows-json" else "\n]\n")
