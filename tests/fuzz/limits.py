"""Limits the bad-input API of tests/fuzz runs with (its fixture sets them; tests check them)."""

MAX_WAIT_SECONDS = 2  # a long poll's cap: short, so a test of the cap does not wait long
