"""What the hand-written fixtures (tests/analysis/fixtures) must give: the same eight incidents in
every input format, with the expected values computed by hand from those eight rows:
row  published (UTC)        Austin local day / hour   status    response   address
1    2024-03-06 01:29:39    03-05 (Tue) 19h           ARCHIVED  60 min     S CONGRESS AVE / E OLTORF ST
2    2024-03-06 06:00:00    03-06 (Wed) 00h           ARCHIVED  30 min     1000-1099 S CONGRESS AVE
3    2024-03-06 05:59:59    03-05 (Tue) 23h           ACTIVE    (not used) S CONGRESS AVE / E OLTORF ST
4    2024-03-06 15:00:00    03-06 (Wed) 09h           ARCHIVED  1970: out  N LAMAR BLVD
5    2024-03-07 16:00:00    03-07 (Thu) 10h           ARCHIVED  8 days:out N LAMAR BLVD          (0,0) invalid
6    not a date             -                          archived  no date    S CONGRESS (SB) RAMP   no coordinates
7    2024-03-10 08:30:00    03-10 (Sun) 03h (CDT)     ARCHIVED  120 min    N LAMAR BLVD          outside Austin
8    2024-03-06 23:00:00    03-06 (Wed) 17h           ARCHIVED  0 min      E 7TH ST (padded)     lat 'abc' -> Location
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"

EXPECTED_DAYS = {"2024-03-05": 2, "2024-03-06": 3, "2024-03-07": 1, "2024-03-08": 0, "2024-03-10": 1}
EXPECTED_AVG = (60 + 30 + 120 + 0) / 4
EXPECTED_ISSUES = 5  # Crash Urgent, crash urgent, Traffic Hazard, COLLISION, Stalled Vehicle
EXPECTED_TOP = {
    "N LAMAR BLVD": 3,
    "S CONGRESS AVE / E OLTORF ST": 2,
    "1000-1099 S CONGRESS AVE": 1,
    "E 7TH ST": 1,
    "S CONGRESS (SB) RAMP": 1,
}
EXPECTED_HOURS = {19: 1, 0: 1, 23: 1, 9: 1, 10: 1, 3: 1, 17: 1}
EXPECTED_WEEKDAYS = {"Tuesday": 2, "Wednesday": 3, "Thursday": 1, "Sunday": 1}
