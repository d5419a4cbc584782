"""Configuration from environment variables, parsed once into a frozen dataclass.

Every process (API, worker, CLI) calls :func:`load_settings` at start. A bad value raises
:class:`SettingsError` naming the variable, so a misconfigured pod stops at once with a clear
message instead of failing on the first job. The README's configuration table lists the same
variables; ``tests/core/test_settings_jobs.py`` keeps the two in step.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from .lanes import DEFAULT as DEFAULT_LANE, LANES

DEFAULT_DATA_PATH = "data/traffic_incidents_sample.csv"
JOB_TTL_MAX_SECONDS = 100 * 365 * 24 * 3600  # 3153600000


class SettingsError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Number:
    """A number setting's parser: a whole one (``whole``) or any, within ``lo`` and ``hi``; kept as
    data so that the README's table can be checked to give the same range."""

    lo: float | None
    hi: float | None
    whole: bool

    def __call__(self, name: str, raw: str) -> float:
        lo, hi = self.lo, self.hi
        try:
            value = int(raw) if self.whole else float(raw)
        except ValueError:
            raise SettingsError(_not_a_number(name, raw, "an integer" if self.whole else "a number", lo, hi)) from None
        if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise SettingsError(f"{name} must be {_bounds(lo, hi)}, got {value if self.whole else raw}")
        return value

    def described(self) -> str:
        """As the README's configuration table gives it: ``whole number, 1-64``."""
        span = f"at least {self.lo}" if self.hi is None else f"{self.lo}-{self.hi}"
        return f"whole number, {span}" if self.whole else f"{span}, fractions allowed"


def _int(lo: int | None = None, hi: int | None = None) -> Number:
    return Number(lo, hi, whole=True)


def _bounds(lo: float | None, hi: float | None) -> str:
    if hi is None:
        return f"at least {lo}"
    return f"at most {hi}" if lo is None else f"between {lo} and {hi}"


def _float(lo: float | None = None, hi: float | None = None) -> Number:
    return Number(lo, hi, whole=False)


QUOTED = "has quotes around it, part of the value here (no shell removed them)"


def _unquoted(raw: str) -> str | None:
    """``raw`` without the quotes around it, when it has some (``"5"``, ``'info'``): an env file for
    docker or compose, or a manifest's ``'"5"'``, passes them on, where a shell would remove them."""
    bare = raw.strip()
    if len(bare) >= 2 and bare[0] == bare[-1] and bare[0] in "\"'":
        return bare[1:-1].strip()
    return None


# the units a number setting is written with elsewhere (Go durations, Kubernetes quantities, nginx
# sizes), by the suffix of the setting's name: what one of them is, in the setting's own unit
_UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "_SECONDS": (
        "seconds",
        {
            **dict.fromkeys(("ms", "msec", "millisecond", "milliseconds"), 0.001),
            **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
            **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
            **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
            **dict.fromkeys(("d", "day", "days"), 86400),
        },
    ),
    "_BYTES": (
        "bytes",
        {
            **dict.fromkeys(("b", "byte", "bytes"), 1),
            **dict.fromkeys(("k", "kb", "ki", "kib"), 1024),
            **dict.fromkeys(("m", "mb", "mi", "mib"), 1024**2),
            **dict.fromkeys(("g", "gb", "gi", "gib"), 1024**3),
        },
    ),
}
_WITH_UNIT = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]+)")


def _not_a_number(name: str, raw: str, kind: str, lo: float | None, hi: float | None) -> str:
    """Why ``raw`` is no number, said as the mistake it is, with the bare value to write. A value as
    a YAML file, a compose env file or a habit elsewhere writes it (``'"5"'``, ``30s``, ``1MB``,
    ``1,000``) used to get only "must be an integer, got '30s'"."""
    bare = raw.strip()
    if not bare:
        return f"{name} is empty: give {kind} or leave it unset (it is {SPEC[name][0]})"
    quoted = _unquoted(bare)
    if quoted is not None:
        bare = quoted
    mistake = QUOTED if quoted is not None else ""
    unit_name, units = next((u for suffix, u in _UNITS.items() if name.endswith(suffix)), ("", {}))
    match = _WITH_UNIT.fullmatch(bare)
    if match and match.group(2).lower() in units:
        amount = float(match.group(1)) * units[match.group(2).lower()]
        bare = f"{amount:.12g}"
        mistake = (mistake + " and " if mistake else "") + f"takes {unit_name} as a plain number, without the unit"
    elif re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", bare):  # 1,000: a thousands separator
        bare = bare.replace(",", "")
        mistake = (mistake + " and " if mistake else "") + "takes a plain number, without thousands separators"
    try:
        value = float(bare)
    except ValueError:
        value = float("nan")
    if kind == "an integer" and value != value and re.fullmatch(r"[+-]?0[xXoObB][0-9a-fA-F_]+", bare):
        try:  # 0x10, as YAML 1.1 reads it: a number, but no decimal one
            value = float(int(bare, 0))
            mistake = (mistake + " and " if mistake else "") + "takes a decimal number"
        except ValueError:
            pass
    elif kind == "an integer" and value == value and not mistake:
        mistake = "takes a whole number"  # 5.0, or 1e3 (a YAML or Helm float)
    if not mistake or value != value or abs(value) == float("inf"):
        return f"{name} must be {kind}, got {raw!r}"
    if kind == "an integer" and not value.is_integer():
        if mistake == "takes a whole number":
            return f"{name} must be a whole number, got {raw!r}"
        return f"{name} {mistake}, got {raw!r} ({value:.12g}), and it must be a whole number"
    fix = f"{name}={int(value) if value.is_integer() else f'{value:.12g}'}"
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"{name} {mistake}, got {raw!r} ({fix}), and it must be {_bounds(lo, hi)}"
    return f"{name} {mistake}, got {raw!r}: write {fix}"


def _bool(name: str, raw: str) -> bool:
    """1/0, true/false, yes/no, on/off in any case. An empty value is refused, as every setting with
    a value by default refuses it (PORT=, SUBMIT_RATE_LIMIT=): RESULT_CACHE= (a blank in an .env or a
    manifest) silently turned the result cache off, its default being on."""
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    default = SPEC[name][0] if name in SPEC else None
    unset = f" (unset, it is {default})" if default is not None else ""
    raise SettingsError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off){unset}, got {raw!r}")


def _bool_or_auto(name: str, raw: str) -> str:
    """``auto``, or any form :func:`_bool` reads (DATA_DAY_FIRST=yes as RESULT_CACHE=yes), as
    ``auto``, ``true`` or ``false``."""
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        return "true" if _bool(name, raw) else "false"
    except SettingsError:
        raise SettingsError(
            f"{name} must be auto or a boolean (1/0, true/false, yes/no, on/off), got {raw!r}"
        ) from None


def _str(name: str, raw: str) -> str:
    return raw


def _data_path(name: str, raw: str) -> str:
    """The data file: an empty value (a manifest's or an .env's blank) reached the programs, and the
    API read it as the working directory (a folder: never ready) while the worker waited for a file
    named '' for ever; ``make up`` and the ``jobqueue`` data commands took the default for it."""
    if not raw.strip():
        raise SettingsError(f"{name} must name the data file (unset, it is {DEFAULT_DATA_PATH}), got {raw!r}")
    _refuse_quoted_path(name, raw, Path.exists)
    return raw


def _refuse_quoted_path(name: str, raw: str, found: Callable[[Path], bool]) -> None:
    """A path with quotes around it (DATA_PATH="/data/x.csv" in an env file for docker or compose,
    which keeps them) names a file no one made: the API never became ready and every worker waited
    for it for ever. Refused unless a file or folder of that very name is ``found``."""
    inner = _unquoted(raw)
    if inner is not None and not found(Path(raw)):
        raise SettingsError(f"{name} {QUOTED}, got {raw!r}: write {name}={inner}")


def _cache_dir(name: str, raw: str) -> str:
    """The cache folder: DATA_CACHE_DIR=" " (a quoted blank, a YAML string) was a folder named ' '
    made in the working directory, and " /srv/cache" one named ' ' beside it, without a word. A
    white space around a name is refused as DATA_PATH's is named, unless that folder exists."""
    if raw != raw.strip() and not Path(raw).is_dir():
        fix = f"e.g. {raw.strip()!r}" if raw.strip() else "or leave it empty (the cache then goes beside DATA_PATH)"
        raise SettingsError(
            f"{name} {raw!r} begins or ends with white space, which is part of the folder's name here: "
            f"write it without, {fix}"
        )
    _refuse_quoted_path(name, raw, Path.is_dir)
    return raw


def _token(name: str, raw: str) -> str:
    """A secret as a Secret file holds it: `kubectl create secret --from-file` keeps the file's last
    newline, which no client can send in a header (the API strips what it is sent), so the token is
    kept without surrounding whitespace; it used to lock everyone out with 401."""
    token = raw.strip()
    if token[:1] in _QUOTES or token[-1:] in _QUOTES:
        raise SettingsError(f"{name} {_quoted_secret('the token')}")
    return token


_QUOTES = ("'", '"')


def _quoted_secret(fix: str) -> str:
    """API_TOKEN="abc" in an env file for docker or compose (or a manifest's '"abc"') reaches the
    program with its quotes, which no client sends: the API started, and every request got 401 "the
    token sent is not one this API knows". No generated token begins or ends with a quote."""
    return (
        "begins or ends with a quote, part of the value here (no shell removed it, as an env file for docker or "
        f"compose keeps it), which clients do not send, so every request would be refused: write {fix} without "
        "quotes (the value is a secret: not shown)"
    )


def _secret_file_value(name: str, raw: str) -> str:
    """A password from a Secret, without the file's last newlines (`--from-file`), as the chart's
    Redis reads the same Secret (`$(sed ... password)` in a shell drops them): with them, AUTH
    failed and the API never became ready."""
    return raw.rstrip("\n")


def token_entries(raw: str) -> list[str]:
    """The ``name:token`` entries of ``API_TOKENS``: separated by commas or line breaks. A Secret made
    from a file with one student per line (``--from-file``) used to be one entry, alice's token
    running to the end of the file: the API started, and the whole class got 401."""
    return [e.strip() for e in raw.replace("\n", ",").split(",") if e.strip()]


def _named_tokens(name: str, raw: str) -> str:
    """``name:token,...``: an entry without both halves used to be dropped silently, so a typo locked
    every user out (tokens required, none valid); one token under two names would make its jobs
    someone else's. Messages never show a token."""
    seen: dict[str, str] = {}
    entries = token_entries(raw)
    for i, entry in enumerate(entries, 1):
        who, sep, token = entry.partition(":")
        if any(part.strip()[:1] in _QUOTES or part.strip()[-1:] in _QUOTES for part in (who, token)):
            where = "the whole value" if raw.strip()[:1] in _QUOTES else f"entry {i} of {len(entries)}"
            raise SettingsError(f"{name} ({where}) {_quoted_secret('each name:token')}")
        if not (sep and who.strip() and token.strip()):
            raise SettingsError(
                f"{name} entry {i} of {len(entries)} is not name:token with both parts (the value is a secret: not shown)"
            )
        if token.strip() in seen:
            raise SettingsError(f"{name} gives {seen[token.strip()]!r} and {who.strip()!r} the same token")
        seen[token.strip()] = who.strip()
    return raw if entries else ""  # blank or only commas: no named tokens (not tokens required, none valid)


def _allowed_hosts(name: str, raw: str) -> str:
    """The API's Host allow-list: an empty one (a blank in an .env or a manifest) answered every
    request but the probes with 400 host_not_allowed, while /readyz said ready."""
    if not any(e.strip() for e in raw.split(",")):
        raise SettingsError(
            f"{name} must name at least one host ('*': any; unset, it is localhost,127.0.0.1,[::1]), got {raw!r}"
        )
    if any(q in raw for q in "\"'"):
        # ALLOWED_HOSTS="localhost,127.0.0.1" from an env file for docker or compose, whose quotes
        # reach the program: the API started, /readyz said ready, and every request got 400
        # host_not_allowed (the entries were '"localhost' and '127.0.0.1"'). No host name has one.
        bare = ",".join(e.strip().strip("\"'").strip() for e in raw.split(",") if e.strip().strip("\"'").strip())
        raise SettingsError(
            f"{name} {raw!r} has quotes in it, part of the value here (no shell removed them), and no host "
            f"name has one: write it without, e.g. {name}={bare}"
        )
    return raw


def _proxy_addresses(name: str, raw: str) -> str:
    """``*`` or comma-separated addresses/networks (``10.0.0.0/8``): gunicorn's forwarded_allow_ips,
    checked here so a typo stops the program naming the variable."""
    import ipaddress

    entries = [e.strip() for e in raw.split(",") if e.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name} must be '*' or IP addresses/networks, comma-separated; got {entry!r}"
            ) from None
    if not entries:
        raise SettingsError(f"{name} must name at least one address ('127.0.0.1' trusts only this machine)")
    return ",".join(entries)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _listen_host(name: str, raw: str) -> str:
    """An address to listen on: an IPv4 or IPv6 address (``::1`` or ``[::1]``, kept without the
    brackets, which the programs add where a port follows) or a host name. ``999.1.1.1`` or a
    mistyped name used to reach gunicorn, which retried for 5 s and ended in "Can't connect"."""
    import ipaddress

    if raw == "":  # as gunicorn took an empty host: every IPv4 interface
        return "0.0.0.0"
    host = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and (host == raw or address.version == 6):
        return host
    labels = host.removesuffix(".").split(".")  # a fully qualified name may end in a dot
    name_like = host == raw and len(host) <= 253 and not labels[-1].isdigit()  # 999.1.1.1 is no name
    if name_like and all(_HOST_LABEL.fullmatch(label) for label in labels):
        return host
    fix = _listen_host_fix(name, raw)
    if fix:
        raise SettingsError(fix)
    raise SettingsError(
        f"{name} must be an IP address (0.0.0.0: every interface, 127.0.0.1: this machine only, "
        f"::1 or [::1]: IPv6) or a host name, got {raw!r}"
    )


# the port setting that goes with each address setting
_PORT_OF = {"BIND_HOST": "PORT", "WORKER_METRICS_HOST": "WORKER_METRICS_PORT"}


def _listen_host_fix(name: str, raw: str) -> str | None:
    """The address in ``raw`` as the setting takes it, when ``raw`` is one written as elsewhere: with
    a port (gunicorn's ``--bind 0.0.0.0:5000``), as a URL (``http://0.0.0.0``), with white space
    around it, or ``*`` for every interface. They were told only what an address is."""
    from urllib.parse import urlsplit

    bare = raw.strip()
    if bare == "*":
        return f"{name} takes an address, got '*': write {name}=0.0.0.0 for every interface"
    try:
        parts = urlsplit(bare if "://" in bare else f"//{bare}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or host == raw or parts.path.strip("/") or parts.query or parts.username:
        return None  # nothing written around the address: what an address is says it
    try:
        _listen_host(name, host)
    except SettingsError:
        return None
    written = f"[{host}]" if ":" in host else host
    also = f" (the port goes in {_PORT_OF[name]}: {_PORT_OF[name]}={port})" if port is not None else ""
    return f"{name} takes an address alone, got {raw!r}: write {name}={written}{also}"


def check_listen_host(name: str, host: str) -> None:
    """SettingsError unless this machine can listen on ``host`` (a name that resolves elsewhere, an
    address of another machine), tried as gunicorn binds it: an IPv6 address on an IPv6 socket,
    anything else on an IPv4 one, on a port the kernel picks (so nothing is taken)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
    except socket.gaierror as exc:
        raise SettingsError(
            f"{name} {host!r} does not resolve to an {'IPv6' if family == socket.AF_INET6 else 'IPv4'} "
            f"address here ({exc.strerror})"
        ) from None
    except OSError as exc:
        why = "is not an address of this machine" if exc.errno == errno.EADDRNOTAVAIL else "cannot be listened on"
        raise SettingsError(
            f"{name} {host!r} {why} ({exc.strerror}): use 0.0.0.0 for every interface, 127.0.0.1 for this machine only"
        ) from None


def check_listen_port(name: str, host: str, port: int) -> None:
    """SettingsError when another program already listens on ``port`` at ``host`` (a checked
    BIND_HOST), tried as gunicorn binds it (SO_REUSEADDR, so a port in TIME_WAIT passes). The API
    used to retry for 5 s and exit 1 with gunicorn's "Can't connect to ('127.0.0.1', 9102)", naming
    neither PORT nor API_METRICS_PORT (a worker's metrics port is the usual other holder)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise SettingsError(
                f"{name} {port} is in use on {reach_address(host)} by another program: stop it or choose another {name}"
            ) from None


def reach_address(host: str) -> str:
    """The address a client on this machine reaches a listener on ``host`` (a checked BIND_HOST) at,
    as a URL writes it: a wildcard's loopback (0.0.0.0: 127.0.0.1, ``::``: ``[::1]``), an address
    itself (``[::1]``), a name the IPv4 address it is bound on (as gunicorn binds it)."""
    import ipaddress
    import socket

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    if address.is_unspecified:
        return "[::1]" if address.version == 6 else "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


def print_reach_addresses(environ: Mapping[str, str] | None = None) -> None:
    """For ``make up``: the API's and the workers' metrics addresses (BIND_HOST, WORKER_METRICS_HOST),
    one a line, as :func:`reach_address`; exit 2 with the reason when this machine cannot listen there.
    make up waited on 127.0.0.1 whatever BIND_HOST said: with ``::1`` it never saw the API ready."""
    import sys

    env = os.environ if environ is None else environ
    hosts: list[str] = []
    try:
        for name in ("BIND_HOST", "WORKER_METRICS_HOST"):
            default, parse, _doc = SPEC[name]
            host = str(parse(name, env.get(name, default)) or hosts[0])
            check_listen_host(name, host)
            hosts.append(host)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print("\n".join(reach_address(host) for host in hosts))


def _optional(parse: Callable[[str, str], str]) -> Callable[[str, str], str]:
    """``parse``, with an empty value left empty (it means: as another variable says)."""
    return lambda name, raw: parse(name, raw) if raw else raw


# the chart's values.schema.json (config.queueName) holds the same pattern; tests keep them equal
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# ... and this one under "not": a name ending in -<lane> is another queue's lane (keys.lane_queue_name)
QUEUE_NAME_LANE_SUFFIX = "-(" + "|".join(lane for lane in LANES if lane != DEFAULT_LANE) + ")$"


def _queue_name(name: str, raw: str) -> str:
    """A name the key layout can carry (``hotqueue:<name>``, ``<name>-plots``, ``delayed:<name>``)
    and a PromQL label matcher can quote: '' or ' jobs' used to start a worker on a queue the API
    never filled, and a '*' or '"' would break the key patterns and the autoscaling query. Nor
    ``jobs-plots``: on a Redis db shared with a deployment of ``jobs``, each side's workers ran the
    other's jobs (its default lane is their plots lane)."""
    if not re.fullmatch(QUEUE_NAME_PATTERN, raw):
        raise SettingsError(
            f"{name} must be letters, digits and . _ : - only (it names Redis keys: hotqueue:<name>), got {raw!r}"
        )
    lane = re.search(QUEUE_NAME_LANE_SUFFIX, raw)
    if lane:
        owner = raw[: lane.start()]
        raise SettingsError(
            f"{name} must not end in -{lane.group(1)}, got {raw!r}: hotqueue:{raw} is the {lane.group(1)} lane of "
            f"queue {owner!r}, so on a Redis db shared with a deployment of {owner!r} each would run the other's jobs"
        )
    return raw


def _choice(*allowed: str) -> Callable[[str, str], str]:
    """One of ``allowed``, in any case (DATA_CACHE_MODE=OFF was refused, LOG_LEVEL=info taken)."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip().upper() if allowed[0].isupper() else raw.strip().lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(name: str, raw: str) -> str:
    """A level name as Python's logging knows it, in any case: ``warn``, ``WARN`` and ``FATAL`` are
    its other names for WARNING and CRITICAL, and NOTSET (log everything) is DEBUG, the lowest level
    anything here logs at. Kept as the canonical name, which gunicorn's ``loglevel`` takes too.
    ``LOG_LEVEL=WARN`` and ``CRITICAL`` used to stop both programs as if they were garbage."""
    import logging

    level = logging.getLevelNamesMapping().get(raw.strip().upper())
    if level is None:
        raise SettingsError(
            f"{name} must be one of {', '.join(LOG_LEVELS)} (any case; WARN and FATAL are WARNING and "
            f"CRITICAL), got {raw!r}"
        )
    return logging.getLevelName(max(level, logging.DEBUG))


# the files a rediss:// URL may name (redis-py's SSLConnection options): a file, or a folder for ssl_ca_path
_TLS_FILES = {"ssl_ca_certs": "file", "ssl_certfile": "file", "ssl_keyfile": "file", "ssl_ca_path": "folder"}


def _redis_url(name: str, raw: str) -> str:
    options = redis_url_options(name, raw)
    # checked once, at start (not on each client built: a certificate rotated later is Redis's error)
    for key, kind in _TLS_FILES.items():
        given = options.get(key)
        if given is None:
            continue
        found = Path(str(given)).is_dir() if kind == "folder" else Path(str(given)).is_file()
        if not found:
            # it used to start, then every connection failed with "Error 2 connecting to host:port. No
            # such file or directory", as if Redis were unreachable: /readyz 503 and jobs waiting for ever
            raise SettingsError(
                f"{name}'s {key} names {str(given)!r}, which is no {kind} here "
                f"(looked for from {Path.cwd()}): give the path of the {kind} on this machine"
            )
    return raw


def masked_redis_url(url: str) -> str:
    """``url`` as a message may show it: its password ``***``, the rest as given. redis-py takes a
    password from the user info (``redis://:pw@host``, ``redis://user:pw@host``: all of it before
    the host becomes ``***@``) and from a query argument (``?password=pw``, also ``ssl_password``:
    ``?password=***``). make up's banner masked only the first, and printed
    ``REDIS_URL=redis://host?password=...`` in clear. Also for text that is not a URL yet
    (``host:6379?password=pw``, which the settings refuse naming it)."""
    scheme, sep, rest = url.partition("://")
    head = scheme + sep if sep else ""
    if not sep:
        rest = url
    # the host part ends at the path or the query, as urllib (so redis-py) ends it, and its user
    # info at the last "@" in it; a "#" does not end it here, so a password with one is masked whole
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0] or [len(rest)])
    host, tail = rest[:end], rest[end:]
    if "@" in host:
        host = "***@" + host.rpartition("@")[2]
    path, question, query = tail.partition("?")
    if question:
        # each argument to the next "&" (a "#" in a password's value is masked with it)
        arguments = []
        for argument in query.split("&"):
            key, equals, _value = argument.partition("=")
            if equals and "password" in unquote_plus(key).lower():
                argument = f"{key}=***"
            arguments.append(argument)
        tail = path + question + "&".join(arguments)
    return head + host + tail


def redis_url_options(name: str, raw: str) -> dict[str, object]:
    """What a Redis URL says (host, port, user, password, TLS options, db), as redis-py reads it,
    or SettingsError naming ``name``. The caller decides the db; see :func:`_check_redis_db`."""
    import redis.connection

    _check_wrapped_url(name, raw)
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        # with one that works: the tutorial gives a host (REDIS_IP) and a port, and REDIS_URL=$REDIS_IP
        # or REDIS_URL=127.0.0.1:6379 was refused naming the schemes only
        rest = raw.split("://", 1)[-1]
        if rest.startswith("/"):
            example = f"unix://{rest}"
        elif (
            rest
            and rest.count(":") <= 1
            and not any(c in rest for c in "/@?#[]")
            and not any(c.isspace() for c in rest)
        ):
            example = f"redis://{rest}" if ":" in rest else f"redis://{rest}:6379"
        else:
            example = "redis://HOST:6379"
        raise SettingsError(
            f"{name} must start with redis://, rediss:// or unix://, got {masked_redis_url(raw)!r}: e.g. {name}={example}"
        )
    try:
        options = redis.connection.parse_url(raw)
    except ValueError as exc:
        why = str(exc)
        # the "port" redis-py names may be a password's first characters: in redis://:pa?ss@host a "?"
        # (or "#", "/") ends the host part at ":pa". Not named when there is user info, then.
        bracketed = _bracketed_ipv6(raw)
        if bracketed:
            why = f"an IPv6 address goes in brackets, e.g. {name}={masked_redis_url(bracketed)}"
        elif why.startswith("Port could not") and "@" in raw.split("://", 1)[1]:
            why = "its port is not a number (in a password, write '/', '?' and '#' as %2F, %3F and %23)"
        raise SettingsError(f"{name} is not a valid Redis URL: {why}") from None
    if raw.startswith("unix://"):
        _check_socket_path(name, raw, options)
    for key in ("socket_timeout", "socket_connect_timeout"):  # 0 makes every call fail, < 0 a 500
        seconds = options.get(key)
        if seconds is not None and not 0 < float(str(seconds)) < float("inf"):
            raise SettingsError(
                f"{name}'s {key} must be a number of seconds above 0, got {seconds!r} (leave it out for the default)"
            )
    name_given = options.get("client_name")
    if name_given is not None and not all("!" <= c <= "~" for c in str(name_given)):
        # Redis refuses CLIENT SETNAME with a space, a newline or a byte outside '!'..'~' as each
        # connection is made: every route needing Redis failed, the process had started "fine"
        raise SettingsError(
            f"{name}'s client_name {name_given!r} has a space or a character Redis refuses in a client "
            "name (only '!' to '~'): e.g. client_name=my-app"
        )
    path = raw.split("?", 1)[0].split("://", 1)[1].partition("/")[2]
    if "db" not in options and path and not raw.startswith("unix://"):
        raise SettingsError(
            f"{name} names db {path!r}, which is not a number: write redis://host:port/0 "
            "or leave the db out (REDIS_JOBS_DB and REDIS_QUEUE_DB choose them)"
        )
    probe = {k: v for k, v in options.items() if k not in ("connection_class", "db")}
    try:  # an unknown ?option= is a TypeError only when the first connection is made: check it now
        options.get("connection_class", redis.connection.Connection)(**probe)
    except TypeError as exc:
        unknown = str(exc).rsplit(" ", 1)[-1].strip("'")
        raise SettingsError(f"{name} has an option redis-py does not know: {unknown!r}") from None
    return options


def _check_wrapped_url(name: str, raw: str) -> None:
    """Quotes or spaces around a URL reach the programs as part of it where no shell removes them
    (docker's and compose's env files, a manifest's value): ``"redis://host:6379"`` was refused with
    a wrong fix (``e.g. REDIS_URL=redis://host:6379"``, the quote kept) and ``redis://host:6379 ``
    with redis-py's "Port could not be cast to integer value as '6379 '". A line break around it is
    not refused: redis-py drops it (a Secret file's last newline), and so it worked."""
    inner = raw.strip()
    quoted = len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'"
    spaced = inner != raw.strip("\r\n")
    if not (quoted or spaced):
        return
    what = "quotes" if quoted else "white space"
    if quoted and spaced:
        what = "quotes and white space"
    fixed = inner[1:-1].strip() if quoted else inner
    raise SettingsError(
        f"{name} {masked_redis_url(raw)!r} has {what} around it, part of the value here (no shell "
        f"removed them): write it without, e.g. {name}={masked_redis_url(fixed)}"
    )


def _bracketed_ipv6(raw: str) -> str | None:
    """``raw`` with its host in brackets when that host is an IPv6 address written without them
    (``redis://::1:6379``, as BIND_HOST takes ``::1``), else None. redis-py read the address's last
    group as the port and said "Port could not be cast to integer value as ':1:6379'"."""
    import ipaddress

    scheme, _, rest = raw.partition("://")
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0] or [len(rest)])
    userinfo, at, host = rest[:end].rpartition("@")
    if host.startswith("[") or host.count(":") < 2:
        return None
    # the last group a port when it can be one (::1:6379 is also an address, but not what is meant)
    for address, port in (tuple(host.rsplit(":", 1)), (host, "")):
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            continue
        if port == "" or (port.isdigit() and 0 < int(port) < 65536):
            return f"{scheme}://{userinfo}{at}[{address}]{':' + port if port else ''}{rest[end:]}"
    return None


def _check_socket_path(name: str, raw: str, options: dict[str, object]) -> None:
    """A ``unix://`` URL is the scheme, then the socket's absolute path (three slashes in all). In
    ``unix://tmp/redis.sock`` redis-py reads ``tmp`` as a host, which a socket has not, and drops it:
    both programs started and retried ``/redis.sock`` for ever (``unix://var/run/redis/redis.sock``
    even reaches ``/run/redis/redis.sock``, another Redis); ``unix://redis.sock`` had no path at all."""
    from urllib.parse import urlsplit

    parts = urlsplit(raw)
    host = parts.netloc.rpartition("@")[2]
    if host.lower() in ("", "localhost") and options.get("path"):
        return
    path = "/" + (host + parts.path).lstrip("/")
    raise SettingsError(
        f"{name} {masked_redis_url(raw)!r} gives no absolute socket path: unix:// is followed by the "
        f"socket's path, which begins with '/', e.g. {name}=unix://{path} (three slashes; "
        f"redis-py took {host!r} for a host and {str(options.get('path') or '')!r} for the path)"
    )


def _check_redis_db(values: dict[str, object]) -> None:
    """A db in REDIS_URL (``/5`` or ``?db=5``) must be the jobs db: the service uses two dbs, and a
    URL that silently moved one of them is how jobs came to sit in a queue no worker reads."""
    raw_db = redis_url_options("REDIS_URL", str(values["redis_url"])).get("db")
    jobs_db, queue_db = values["redis_jobs_db"], values["redis_queue_db"]
    if raw_db is None or raw_db == jobs_db:
        return
    url_db = int(str(raw_db))
    if not 0 <= url_db <= 15:
        # the fix below would name a db the db settings refuse (REDIS_JOBS_DB=-1, or 16 with 14)
        raise SettingsError(
            f"REDIS_URL selects db {url_db}, which is no db REDIS_JOBS_DB can name (0 to 15): leave the db "
            f"out of REDIS_URL (REDIS_JOBS_DB and REDIS_QUEUE_DB choose them; now {jobs_db} and {queue_db})"
        )
    spare = url_db + 1 if url_db < 15 else 14
    raise SettingsError(
        f"REDIS_URL selects db {url_db}, but this service keeps jobs in REDIS_JOBS_DB ({jobs_db}) and the "
        f"queue in REDIS_QUEUE_DB ({queue_db}): leave the db out of REDIS_URL, or set "
        f"REDIS_JOBS_DB={url_db} and REDIS_QUEUE_DB={spare}"
    )


# name -> (default as the environment would spell it, parser, one-line description)
SPEC: dict[str, tuple[str, Callable[[str, str], object], str]] = {
    "REDIS_URL": (
        "redis://127.0.0.1:6379",
        _redis_url,
        "Redis server (redis://, rediss://, unix://); a db in it must equal REDIS_JOBS_DB",
    ),
    "REDIS_PASSWORD": (
        "",
        _secret_file_value,
        "Redis password (overrides one in REDIS_URL); set from a Secret in deployments",
    ),
    "REDIS_JOBS_DB": ("0", _int(0, 15), "Redis db holding job documents and results"),
    "REDIS_QUEUE_DB": ("1", _int(0, 15), "Redis db holding the queue, processing lists and worker heartbeats"),
    "REDIS_TIMEOUT_SECONDS": (
        "5",
        _float(0.1, 300),
        "API: longest wait for one Redis call, retries included; a Redis that does not answer gets 503 after it (a long poll: after its wait); half of it is the API's socket timeout when REDIS_URL sets none",
    ),
    "QUEUE_NAME": (
        "jobs",
        _queue_name,
        "HotQueue name (letters, digits and . _ : -, not ending in -plots); the Redis list is hotqueue:<name>",
    ),
    "DATA_PATH": (
        DEFAULT_DATA_PATH,
        _data_path,
        "traffic incident file (CSV, CSV.gz, JSON or Parquet); relative paths are from the working directory",
    ),
    "DATA_CACHE_DIR": (
        "",
        _cache_dir,
        "where the parsed columnar cache is kept; empty: beside DATA_PATH when writable, else none",
    ),
    "DATA_CACHE_MODE": (
        "readwrite",
        _choice("readwrite", "readonly", "off"),
        "readwrite: build the cache if missing, then map it; readonly: only map what the loader built, never write (a missing cache: parse in memory, logged); off: always parse",
    ),
    "DATA_DAY_FIRST": (
        "auto",
        _bool_or_auto,
        "slashed dates (05/02/2024) are day first (true) or month first (false); auto: day first only when a "
        "first number passes 12 and no second does, else month first, a guess when no number passes 12",
    ),
    "DATA_MAX_BYTES": ("1073741824", _int(1), "largest data file accepted, decompressed (guards against gzip bombs)"),
    "PORT": ("5000", _int(1, 65535), "API listen port"),
    "BIND_HOST": (
        "0.0.0.0",
        _listen_host,
        "API listen address: an IPv4 or IPv6 address (::1 or [::1]) or a host name of this machine",
    ),
    "WEB_CONCURRENCY": ("2", _int(1, 64), "gunicorn worker processes of the API"),
    "API_METRICS_PORT": (
        "0",
        _int(0, 65535),
        "API: a second listener (on BIND_HOST) that alone serves /metrics, which PORT then answers 404 (0: /metrics on PORT); the chart and k8s/ set 9102, a port no Ingress, NodePort or LoadBalancer publishes",
    ),
    "WORKER_METRICS_PORT": ("9100", _int(0, 65535), "worker Prometheus port (0 disables)"),
    "WORKER_METRICS_HOST": (
        "",
        _optional(_listen_host),
        "worker Prometheus listen address (as BIND_HOST); empty: the same as BIND_HOST",
    ),
    "WORKER_CONCURRENCY": ("1", _int(1, 64), "worker processes started by one jobqueue-worker"),
    "JOB_LEASE_SECONDS": ("30", _float(1, 3600), "a worker silent this long loses its jobs back to the queue"),
    # at most 100 years: Redis refuses an expiry whose milliseconds from now pass 2**63 (EX 1e16 is
    # "invalid expire time"), and the worker's final write then failed: jobs stayed in-progress
    "JOB_TTL_SECONDS": (
        "604800",
        _int(60, JOB_TTL_MAX_SECONDS),
        "finished jobs and their results expire after this (at most 3153600000, 100 years)",
    ),
    "JOB_TIMEOUT_SECONDS": ("300", _float(1, 86400), "time limit of one attempt of a job"),
    "JOB_MAX_ATTEMPTS": ("3", _int(1, 100), "attempts for transient errors before a job fails"),
    "JOB_RETRY_BACKOFF_SECONDS": (
        "1",
        _float(0, 3600),
        "first retry delay after a transient error; doubles each attempt (capped at 300 s)",
    ),
    # up to JOB_TIMEOUT_SECONDS' own limit: the chart and compose set it to the job timeout, and with a
    # limit of 3600 a jobTimeoutSeconds of 7200 rendered a grace every pod refused at start
    "SHUTDOWN_GRACE_SECONDS": ("60", _float(0, 86400), "on SIGTERM a worker finishes its job within this, then exits"),
    "RESULT_CACHE": ("1", _bool, "answer a repeat of a finished request from its stored result"),
    "DIAGNOSTIC_OPERATIONS": ("0", _bool, "enable the sleep operation used by tests and benchmarks"),
    "MAX_BODY_BYTES": ("65536", _int(256, 16 * 1024 * 1024), "largest request body the API accepts"),
    "MAX_WAIT_SECONDS": ("60", _float(0, 600), "cap on ?wait= long polls"),
    "MAX_WAITERS": (
        "1000",
        _int(0, 100000),
        "long polls one API process holds at once; beyond, ?wait= answers at once",
    ),
    "MAX_JOBS_PER_CLIENT": (
        "0",
        _int(0, 100000000),
        "API: jobs one client (named token, else address) may hold in Redis at once, from its submit until its document expires (JOB_TTL_SECONDS after it ends) or is deleted; beyond, 429 too_many_jobs_held (0: no cap)",
    ),
    "SUBMIT_RATE_LIMIT": (
        "0",
        _int(0, 1000000),
        "API: submissions one client (named token, else address) may make per SUBMIT_RATE_WINDOW_SECONDS (a sliding window, a minute by default); beyond, 429 with Retry-After (0: no limit; the chart and k8s/ set 600)",
    ),
    "SUBMIT_RATE_WINDOW_SECONDS": (
        "60",
        _int(1, 3600),
        "API: the sliding window SUBMIT_RATE_LIMIT counts submissions in, seconds back from each submit",
    ),
    "TOKEN_FAILURE_LIMIT": (
        "20",
        _int(0, 10000),
        "API: distinct wrong tokens (Bearer header, page cookie, /ui/login) one client (its address) may send within TOKEN_FAILURE_WINDOW_SECONDS, counted in Redis; beyond, every token it sends, the right one too, gets 429 with Retry-After until its oldest wrong token leaves the window (0: no limit)",
    ),
    "TOKEN_FAILURE_WINDOW_SECONDS": (
        "60",
        _int(1, 3600),
        "API: the sliding window TOKEN_FAILURE_LIMIT counts wrong tokens in, seconds back from each request",
    ),
    "ALLOWED_HOSTS": (
        "localhost,127.0.0.1,[::1]",
        _allowed_hosts,
        "API: Host names it answers to, comma-separated ('*' any; a '*' label matches one label); probes and /metrics are exempt",
    ),
    "FORWARDED_ALLOW_IPS": (
        "127.0.0.1",
        _proxy_addresses,
        "API: addresses whose X-Forwarded-Proto is believed (the scheme of /help's examples and of the "
        "login cookie), comma-separated ('*': any; the chart and k8s/ set it: their pods are reached "
        "only through a Service, an Ingress or port-forward)",
    ),
    "SYNC_PLOTS_PER_PROCESS": (
        "2",
        _int(0, 64),
        "synchronous GET /analysis/plot_* renders one API process runs at once; beyond, 503 with Retry-After (0: none)",
    ),
    "CLIENT_TIMEOUT_SECONDS": (
        "5",
        _int(1, 300),
        "API: a client must send its request headers, and its body, within this, and make room for its answer within it "
        "(a write waiting longer ends the connection); idle keep-alive connections close after it",
    ),
    "API_TOKEN": ("", _token, "if set, job routes require Authorization: Bearer <token>"),
    "API_TOKENS": (
        "",
        _named_tokens,
        "named tokens 'name:token,...' (from a Secret): each sees and changes only its own jobs; API_TOKEN is then the admin token",
    ),
    "LOG_LEVEL": (
        "INFO",
        _log_level,
        "log level: DEBUG, INFO, WARNING (WARN), ERROR or CRITICAL (FATAL), any case; logs are JSON lines on stdout",
    ),
}


@dataclass(frozen=True)
class Settings:
    redis_url: str
    redis_password: str
    redis_jobs_db: int
    redis_queue_db: int
    redis_timeout_seconds: float
    queue_name: str
    data_path: str
    data_cache_dir: str
    data_cache_mode: str
    data_day_first: str
    data_max_bytes: int
    port: int
    bind_host: str
    web_concurrency: int
    api_metrics_port: int
    worker_metrics_port: int
    worker_metrics_host: str
    worker_concurrency: int
    job_lease_seconds: float
    job_ttl_seconds: int
    job_timeout_seconds: float
    job_max_attempts: int
    job_retry_backoff_seconds: float
    shutdown_grace_seconds: float
    result_cache: bool
    diagnostic_operations: bool
    max_body_bytes: int
    max_wait_seconds: float
    max_waiters: int
    allowed_hosts: str
    forwarded_allow_ips: str
    submit_rate_limit: int
    submit_rate_window_seconds: int
    max_jobs_per_client: int
    token_failure_limit: int
    token_failure_window_seconds: int
    sync_plots_per_process: int
    client_timeout_seconds: int
    api_token: str
    api_tokens: str
    log_level: str

    def data_options(self) -> dict[str, Any]:
        """Keyword arguments of ``atx_analysis.dataset.load_dataset`` (the package reads no env)."""
        return {
            "cache_dir": self.data_cache_dir or None,
            "cache_mode": self.data_cache_mode,
            "day_first": {"true": True, "false": False}.get(self.data_day_first),
            "max_bytes": self.data_max_bytes,
        }

    def replace(self, **changes: object) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


# their values are never shown: their parsers say what is wrong with quotes themselves
SECRETS = ("REDIS_PASSWORD", "API_TOKEN", "API_TOKENS")


def _parse(name: str, parse: Callable[[str, str], object], raw: str) -> object:
    """``parse(name, raw)``; a value refused that the same without quotes around it would pass is
    refused saying so: LOG_LEVEL="info", RESULT_CACHE='true' or DATA_CACHE_MODE="off" from an env
    file for docker or compose used to be told only the values allowed, which it seemed to be."""
    try:
        return parse(name, raw)
    except SettingsError as refused:
        inner = _unquoted(raw)
        if name in SECRETS or inner is None or "quote" in str(refused) or not _accepts(parse, name, inner):
            raise  # the parser's own refusal says it, or says more
        raise SettingsError(f"{name} {QUOTED}, got {raw!r}: write {name}={inner}") from None


def _accepts(parse: Callable[[str, str], object], name: str, raw: str) -> bool:
    try:
        parse(name, raw)
    except SettingsError:
        return False
    return True


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every variable in :data:`SPEC`; raise SettingsError on the first bad one."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (default, parse, _doc) in SPEC.items():
        values[name.lower()] = _parse(name, parse, env.get(name, default))
    _check_redis_db(values)
    if values["api_metrics_port"] and values["api_metrics_port"] == values["port"]:
        raise SettingsError(
            f"API_METRICS_PORT must differ from PORT ({values['port']}): it is a second listener "
            "(0 serves /metrics on PORT)"
        )
    admin = values["api_token"].strip()
    if admin and any(e.partition(":")[2].strip() == admin for e in token_entries(values["api_tokens"])):
        raise SettingsError("API_TOKENS gives a named user the admin API_TOKEN: each needs a token of its own")
    values["worker_metrics_host"] = values["worker_metrics_host"] or values["bind_host"]
    return Settings(**values)


def misnamed(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables named as a setting in another case (``log_level``, ``Job_Ttl_Seconds``), which no
    program reads, mapped to the setting's name: a compose file's or a ConfigMap's ``log_level:
    debug`` was ignored without a word. For a warning at start, as another program may own them."""
    env = os.environ if environ is None else environ
    upper = {name.upper(): name for name in SPEC}
    return {given: upper[given.upper()] for given in env if given not in SPEC and given.upper() in upper}


def warn_misnamed(log: logging.Logger, environ: Mapping[str, str] | None = None) -> None:
    """Log :func:`misnamed` variables, one warning each, saying which setting applies instead."""
    env = os.environ if environ is None else environ
    for given, meant in misnamed(env).items():
        now = "unset: its default" if meant not in env else "set too: that value"
        log.warning(
            f"{given} is not read: setting names are upper case, {meant} ({now} applies)",
            extra={"variable": given, "setting": meant},
        )


def program_parser(prog: str, distribution: str, description: str, exits: str) -> argparse.ArgumentParser:
    """The command line of a program configured by these variables only (``jobqueue-api``,
    ``jobqueue-worker``): ``--help`` names every variable and the exit statuses (``exits``), and
    ``--version`` answers from the installed ``distribution``; neither loads anything."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own_version = version(distribution)
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        own_version = "0.0.0"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description + " Configured by environment variables only (the README's Configuration table).",
        epilog="variables: " + ", ".join(SPEC) + ". " + exits,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {own_version}")
    return parser
