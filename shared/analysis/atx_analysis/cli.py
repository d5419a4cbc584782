"""Command-line parts of ``jobqueue`` that belong to the analysis: ``analyze``, ``data``, ``operations``.

``jobqueue analyze OPERATION key=value ... --data PATH`` is the tutorial's "route for direct
testing": it runs one operation in-process and prints the JSON result (exit 0), or a clear message
on stderr. Exit statuses are :class:`jobqueue.cliargs.Exit` (2 for a bad operation, parameter
or data file; 3 when a download cannot reach the portal). ``args.load_options`` carries
DATA_CACHE_DIR and DATA_MAX_BYTES from the ``jobqueue`` command's Settings.
"""

from __future__ import annotations

import argparse
import shlex
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from jobqueue.cliargs import (
    Exit,
    UsageError,
    add_format_options,
    check_writable,
    parse_pairs,
    typed,
)  # this module is the jobqueue command's plug-in
from jobqueue.settings import DEFAULT_DATA_PATH

DEFAULT_DATA = DEFAULT_DATA_PATH  # the services' default (jobqueue.settings), found from a checkout too
FULL_ROWS = 432_444  # = generator.FULL_ROWS, without importing pandas to build the parser


def _default_data() -> str:
    env = os.environ.get("DATA_PATH")
    if env:
        return env
    if Path(DEFAULT_DATA).is_file():
        return DEFAULT_DATA
    repo_sample = Path(__file__).resolve().parents[3] / DEFAULT_DATA  # running from a checkout
    return str(repo_sample) if repo_sample.is_file() else DEFAULT_DATA


def _fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(getattr(args, "load_options", None) or {})


def cmd_analyze(args: argparse.Namespace) -> int:
    import atx_analysis.operations  # noqa: F401  (fills the registry)
    from .dataset import load_dataset
    from .errors import DataFormatError
    from .registry import REGISTRY, ParamError, UnknownOperation

    prog = "jobqueue analyze"
    # `analyze top_locations n=5 data/x.csv`: the file was read as the rest of a value split at a space
    # ("write n='5 data/x.csv'"); a word without '=' naming a file is the data file, given with --data
    files = [word for word in args.params if "=" not in word and os.path.isfile(word)]
    if files:
        return _fail(prog, f"the data file is given with --data: write --data {shlex.quote(files[0])}", Exit.USAGE)
    try:
        op = REGISTRY.get(args.operation)
        params = op.validate(typed(op.describe()["params"], parse_pairs(args.params)))  # as submit types them
    except UnknownOperation as exc:
        return _fail(prog, str(exc), Exit.USAGE)
    except ParamError as exc:
        return _fail(prog, exc.message, Exit.USAGE)
    except UsageError as exc:
        return _fail(prog, str(exc), Exit.USAGE)
    if op.produces_png and not args.output:
        return _fail(prog, f"{op.name} makes a PNG: give --output FILE.png (or --output - for stdout)", Exit.USAGE)
    try:  # before the analysis runs, not after
        if args.output and args.output != "-":
            check_writable(args.output)
    except UsageError as exc:
        return _fail(prog, str(exc), Exit.USAGE)
    try:
        ds = load_dataset(args.data, **_load_options(args))
        result = op.run(ds, params)
    except ParamError as exc:
        return _fail(prog, exc.message, Exit.USAGE)
    except DataFormatError as exc:  # a missing column too: the data given cannot answer this
        return _fail(prog, str(exc), Exit.USAGE)
    if op.produces_png:
        if args.output == "-":
            sys.stdout.buffer.write(result)
            sys.stdout.buffer.flush()
        else:
            Path(args.output).write_bytes(result)
            print(json.dumps({"operation": op.name, "output": args.output, "bytes": len(result)}))
        return 0
    text = json.dumps(result, indent=2 if args.pretty else None, allow_nan=False)
    if args.output and args.output != "-":
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


def cmd_operations(args: argparse.Namespace) -> int:
    import atx_analysis.operations  # noqa: F401
    from .registry import REGISTRY

    if args.templates and args.format == "table":  # operations_table() of them was a TypeError traceback
        return _fail(
            "jobqueue operations",
            "--templates prints JSON (the tutorial's submit_templates.json), not a table: leave out --format table",
            Exit.USAGE,
        )
    output = None if args.output == "-" else args.output  # "-" is stdout, as for analyze
    if output is not None:  # a missing folder, a folder: one line, exit 2 (a traceback, exit 1, before)
        try:
            check_writable(output)
        except UsageError as exc:
            return _fail("jobqueue operations", str(exc), Exit.USAGE)
    if args.templates:
        doc: Any = templates(REGISTRY)
    else:
        doc = [op.describe() for op in REGISTRY]
    human = args.format == "table" or (
        args.format == "auto" and not args.templates and not output and sys.stdout.isatty()
    )
    text = operations_table(doc) if human else json.dumps(doc, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    else:
        print(text)
    return 0


def operations_table(described: list[dict[str, Any]]) -> str:
    """One block per operation: name, result type, one line per parameter, the description."""
    lines = []
    for op in described:
        lines.append(f"{op['name']}  ->  {'PNG image' if op['result'] == 'image/png' else 'JSON'}")
        for p in op["params"]:
            bounds = [f"{k} {p[k]}" for k in ("minimum", "maximum", "max_length") if k in p]
            need = "required" if p["required"] else f"default {json.dumps(p.get('default'))}"
            extra = ", ".join([p["type"], need, *bounds])
            lines.append(f"    {p['name']:<12} {extra}: {p['description']}")
        lines.append(f"    {op['description']}")
        example = " ".join(shlex.quote(f"{k}={v}") for k, v in op["example"]["params"].items())
        lines.append(f"    e.g. jobqueue submit {op['name']} {example}".rstrip())
        lines.append("")
    return "\n".join(lines).rstrip()


def templates(registry) -> dict[str, Any]:
    """The tutorial's ``submit_templates.json``: one ready-to-POST body per operation."""
    return {op.name: op.example_submission() for op in registry}


# about 100 times the real data: the generator holds every row in memory before it writes them
MAX_GENERATED_ROWS = 50_000_000


def cmd_generate(args: argparse.Namespace) -> int:
    from .generator import write_csv

    prog = "jobqueue data generate"
    if not 1 <= args.rows <= MAX_GENERATED_ROWS:  # 10**20 was numpy's ValueError traceback
        return _fail(prog, f"--rows must be from 1 to {MAX_GENERATED_ROWS:,}", Exit.USAGE)
    if os.path.isdir(args.output):  # before the rows are made: it was a traceback after, and a stray <dir>.tmp
        return _fail(prog, f"--output {args.output} is a folder: give a file name in it", Exit.USAGE)
    try:
        path = write_csv(args.output, rows=args.rows, seed=args.seed, nine_columns=args.nine_columns, form=args.format)
    except OSError as exc:  # a read-only folder, a full disk: one line, not a traceback
        return _fail(prog, f"--output {args.output} cannot be written: {exc.strerror or exc}", Exit.USAGE)
    print(
        json.dumps(
            {
                "output": str(path),
                "rows": args.rows,
                "seed": args.seed,
                "format": args.format,
                "bytes": path.stat().st_size,
            }
        )
    )
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .dataset import load_dataset
    from .errors import DataFormatError
    from .fetch import FetchError, copy, fetch

    prog = "jobqueue data fetch"
    if args.url and args.source != "export":
        return _fail(prog, "--url replaces the export source's address; it does not go with --source soda", Exit.USAGE)
    output = args.output or (
        "data/full/traffic_incidents.csv" if args.source == "export" else "data/full/traffic_incidents.json"
    )
    options = _load_options(args)
    if args.keep_existing and os.path.isfile(output) and os.path.getsize(output) > 0:
        try:  # the data stays; its parsed cache for this version is built if missing (an upgrade)
            kept = load_dataset(output, **options)
        except DataFormatError as exc:  # put there by hand: kept as asked; the pods' readiness says why
            print(f"{prog}: warning: {output} is kept but is not a usable dataset, so no cache: {exc}", file=sys.stderr)
            print(json.dumps({"output": output, "kept": True, "bytes": os.path.getsize(output), "cache": None}))
            return 0
        print(
            json.dumps(
                {"output": output, "kept": True, "bytes": os.path.getsize(output), **_cache_report(kept, options)}
            )
        )
        return 0
    loaded: dict[str, Any] = {}

    def usable(path: Path) -> None:  # before it replaces the output: a bad file never lands there
        # parsed under the output's name: its cache is the one the output's readers look for
        dataset = load_dataset(path, name=Path(output).name, **options)
        if not dataset.rows:  # every answer would count nothing: not a dataset to replace one with
            reason = (dataset.date_warning() or "no incident rows").removesuffix(": every answer counts nothing")
            raise DataFormatError(f"no incident row could be read from it: {reason}")
        loaded["dataset"] = dataset

    origin = args.copy_from or args.url or args.base_url
    show = _Progress("bytes" if args.source == "export" else "records") if sys.stderr.isatty() else None
    try:
        if args.copy_from:
            copy(args.copy_from, output, check=usable)
        else:
            fetch(
                output,
                source=args.source,
                base_url=args.base_url,
                page_size=args.page_size,
                timeout=args.timeout,
                app_token=os.environ.get("SODA_APP_TOKEN") or None,
                url=args.url,
                check=usable,
                progress=show,
            )
    except FetchError as exc:  # a local --from file that is not there is bad input; a download, unreachable
        return _fail(prog, str(exc), Exit.USAGE if args.copy_from else Exit.UNAVAILABLE)
    except DataFormatError as exc:
        return _fail(prog, f"{origin} is not a usable dataset ({exc}); {output} left as it was", Exit.USAGE)
    finally:
        if show:
            show.done()
    dataset = loaded["dataset"]
    _warn_about_dates(prog, dataset)
    # "path": the file readers get (the dataset was checked in a temporary file, since renamed to it)
    print(
        json.dumps(
            {**dataset.info(), "path": output, "output": output, **_cache_report(dataset, options, Path(output))}
        )
    )
    return 0


def _cache_report(dataset, options: dict[str, Any], landed: Path | None = None) -> dict[str, Any]:
    """Remember the data file's identity for the readers (a renamed download has a new name, not a
    new inode or mtime) and remove caches no reader wants any more; say what is there."""
    from .cache import DataCache

    path = Path(landed or dataset.path)
    store = DataCache.of(
        path, options.get("cache_dir"), options.get("cache_mode", "readwrite"), options.get("day_first")
    )
    if not store.writes:
        return {"cache": None}
    store.remember(path, dataset.identity, loaded=True)
    removed = store.prune(path.name, dataset.identity)
    ready = store.ready(path)
    return {"cache": str(ready) if ready else None, "cache_removed": [p.name for p in removed]}


def cmd_wait(args: argparse.Namespace) -> int:
    from .cache import wait_until_ready

    options = _load_options(args)
    wait_until_ready(
        args.data,
        options.get("cache_dir"),
        args.cache_timeout,
        say=lambda line: print(line, flush=True),
        day_first=options.get("day_first"),
    )
    return 0


class _Progress:
    """A one-line counter on a terminal's stderr, redrawn at most a few times a second."""

    def __init__(self, unit: str):
        self.unit, self.last, self.start, self.n = unit, 0.0, time.monotonic(), -1

    def __call__(self, n: int, force: bool = False) -> None:
        self.n = n
        now = time.monotonic()
        if now - self.last < 0.2 and not force:
            return
        self.last = now
        amount = f"{n / 1e6:.1f} MB" if self.unit == "bytes" else f"{n:,} records"
        sys.stderr.write(f"\rdownloading: {amount} in {now - self.start:.1f} s ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.n >= 0:
            self(self.n, force=True)
            sys.stderr.write("\n")


def cmd_info(args: argparse.Namespace) -> int:
    from .dataset import load_dataset
    from .errors import DataFormatError

    try:
        dataset = load_dataset(args.data, **_load_options(args))
    except DataFormatError as exc:
        return _fail("jobqueue data info", str(exc), Exit.USAGE)
    _warn_about_dates("jobqueue data info", dataset)
    print(json.dumps(dataset.info(), indent=2))
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    """The chart's data-shell pod: it mounts the data volume writable and waits, so a file can be
    copied onto the volume (``kubectl cp`` runs ``tar`` in it) and loaded with ``kubectl exec``.
    Makes the upload folder, prints the commands with this pod's paths, and exits 0 on SIGTERM."""
    import signal

    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before anything is printed: held from then on
    data = Path(args.data)
    upload = Path(args.upload) if args.upload else data.parent / "upload"
    try:
        upload.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail("jobqueue data hold", f"cannot make {upload} ({exc}): is the data volume mounted writable?", 1)
    pod = os.environ.get("HOSTNAME", "<pod>")
    ns = f" --namespace {os.environ['POD_NAMESPACE']}" if os.environ.get("POD_NAMESPACE") else ""
    mine = f"{upload}/my-incidents.csv"
    print(
        f"the data volume is mounted writable; the dataset is {data}. To load your own file:\n"
        f"  kubectl cp{ns} my-incidents.csv {pod}:{mine}\n"
        f"  kubectl exec{ns} {pod} -- jobqueue data fetch --from {mine} --output {data}\n"
        f"  kubectl exec{ns} {pod} -- rm {mine}\n"
        "then restart the API and worker Deployments: they keep the dataset they loaded at start",
        flush=True,
    )
    signal.sigwait(stop)
    return 0


def _warn_about_dates(prog: str, dataset) -> None:
    """A file whose dates the loader cannot read is still a dataset (bad values never stop a load),
    but every date answer from it is 0: say so on stderr, where the loader's pod log shows it."""
    if warning := dataset.date_warning():
        print(f"{prog}: warning: {warning}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``analyze``, ``operations`` and ``data`` to the ``jobqueue`` command."""
    from .fetch import PORTAL, SOURCES  # stdlib-only at import time: `jobqueue version` stays quick

    p = sub.add_parser(
        "analyze",
        help="run one analysis operation on a data file and print the JSON result",
        description="Run an operation directly (no queue). Example: "
        "jobqueue analyze top_locations n=5 --data data/traffic_incidents_sample.csv",
    )
    p.add_argument("operation", help="operation name (jobqueue operations lists them)")
    p.add_argument(
        "params", nargs="*", default=[], metavar="key=value", help="parameters, e.g. date=2024-03-09"
    )  # default: else argparse lists key=value as required when nothing is given
    p.add_argument("--data", default=_default_data(), help="data file (default: $DATA_PATH or the bundled sample)")
    p.add_argument("--output", "-o", help="write the result here (required for PNG operations; - is stdout)")
    p.add_argument("--pretty", action="store_true", help="indent the JSON")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "operations",
        help="list the operations with their parameters",
        description="A readable list on a terminal; JSON when piped or with --json.",
    )
    add_format_options(p)
    p.add_argument(
        "--templates",
        action="store_true",
        help="print example submissions instead, as JSON (the tutorial's submit_templates.json)",
    )
    p.add_argument("--output", "-o", help="write to this file instead of stdout (- is stdout)")
    p.set_defaults(func=cmd_operations)

    data = sub.add_parser("data", help="generate, fetch or inspect traffic incident data")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("generate", help="write a synthetic dataset in the portal's CSV export format")
    p.add_argument(
        "--rows",
        type=int,
        default=FULL_ROWS,
        help=f"rows (default {FULL_ROWS:,}, the real size; at most {MAX_GENERATED_ROWS:,})",
    )
    p.add_argument("--seed", type=int, default=332, help="random seed (same seed, same file)")
    p.add_argument("--output", "-o", default="data/full/traffic_incidents.csv", help="file (.gz compresses)")
    p.add_argument("--nine-columns", action="store_true", help="the older 9-column export (no Agency)")
    p.add_argument(
        "--format",
        choices=("csv", "soda-json", "rows-json"),
        default="csv",
        help="csv (the portal's CSV export), soda-json (the SODA API's records) or rows-json (the portal's JSON export)",
    )
    p.set_defaults(func=cmd_generate)

    p = dsub.add_parser("fetch", help="download the live dataset from data.austintexas.gov")
    p.add_argument(
        "--source",
        choices=SOURCES,
        default="export",
        help="export: the portal's CSV export; soda: the SODA API's JSON, paged",
    )
    p.add_argument("--output", "-o", help="file (default data/full/traffic_incidents.csv or .json)")
    p.add_argument("--base-url", default=PORTAL, help=f"portal address (default {PORTAL})")
    p.add_argument("--page-size", type=int, default=50_000, help="SODA page size")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    origin = p.add_mutually_exclusive_group()
    origin.add_argument("--url", help="download this address instead of the portal's export (a mirror)")
    origin.add_argument(
        "--from",
        dest="copy_from",
        metavar="PATH",
        help="copy a local file instead of downloading (the chart copies the image's sample)",
    )
    p.add_argument(
        "--keep-existing",
        action="store_true",
        help="keep the file when --output already holds a non-empty one, and build this version's parsed cache "
        "for it if missing (the chart's loader: an upgrade keeps the data)",
    )
    p.set_defaults(func=cmd_fetch)

    p = dsub.add_parser(
        "wait",
        help="wait for the data file, then (bounded) for its parsed cache (the worker pods' init container)",
        description="Exit 0 once DATA_PATH exists and, within --cache-timeout seconds, its parsed "
        "cache for this version is in DATA_CACHE_DIR; without the cache the worker "
        "parses the file itself.",
    )
    p.add_argument("--data", default=_default_data(), help="data file (default: $DATA_PATH)")
    p.add_argument(
        "--cache-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long to wait for the cache once the file is there (default 0: not at all)",
    )
    p.set_defaults(func=cmd_wait)

    p = dsub.add_parser(
        "hold",
        help="keep a pod that mounts the data volume writable running, for kubectl cp and exec (the chart's data-shell)",
        description="Make the upload folder beside the data file, print how to copy a file in and load "
        "it, then wait until SIGTERM (exit 0).",
    )
    p.add_argument("--data", default=_default_data(), help="data file (default: $DATA_PATH)")
    p.add_argument("--upload", help="folder to copy files into (default: upload/ beside the data file)")
    p.set_defaults(func=cmd_hold)

    p = dsub.add_parser("info", help="load a data file and print what was recognised (format, rows, bad values)")
    p.add_argument("--data", default=_default_data(), help="data file")
    p.set_defaults(func=cmd_info)
