"""The targets list that ``make bench`` gathers from every section of docs/benchmarks.md."""

from bench import run_all

DOC = """\
## Targets
<!-- bench:targets -->
| own table | 1x | PASS |
<!-- /bench:targets -->

## API
| target | measured | verdict |
| --- | --- | --- |
| submit throughput at least 0.8x bare Flask | 0.56x | MISS |

## Worker drain
- No-op drain ours >= 1.0x the raw loop: PASS (1.65x)

## Why targets are missed
A paragraph of prose that wraps after a figure, 23% at 4.3M rows (PASS), and goes
on to explain it; none of it is a target line.
"""


def test_rows_and_items_are_gathered_under_their_section():
    lines = run_all.gather_targets(DOC).splitlines()
    assert lines == [
        "- API: submit throughput at least 0.8x bare Flask · 0.56x · MISS",
        "- Worker drain: No-op drain ours >= 1.0x the raw loop: PASS (1.65x)",
    ]


def test_prose_and_the_targets_section_itself_are_left_out():
    gathered = run_all.gather_targets(DOC)
    assert "own table" not in gathered
    assert "paragraph" not in gathered and "23%" not in gathered


def test_a_tables_before_column_is_left_out_and_long_cells_are_cut():
    long_history = "figure after figure, " * 40
    doc = (
        "## Why targets are missed\n\n"
        "| target | before | latest (run, load) | verdict |\n"
        "|---|---|---|---|\n"
        f"| drain vs raw (>= 1.0x) | 0.76x | 4.58x (15:15, load 0.6) | PASS |\n"
        f"| round trip vs Celery | 6.1 ms | {long_history} | MISS |\n"
    )
    lines = run_all.gather_targets(doc).splitlines()
    assert lines[0] == "- Why targets are missed: drain vs raw (>= 1.0x) · 4.58x (15:15, load 0.6) · PASS"
    assert "0.76x" not in lines[0] and "6.1 ms" not in lines[1]
    assert lines[1].endswith(" … · MISS") and len(lines[1]) < run_all.MAX_CELL + 80


def test_make_bench_writes_a_document_outside_the_checkout(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "benchmarks.md"
    monkeypatch.setattr(run_all.report, "DOC", doc)  # what BENCH_DOC sets at import
    monkeypatch.setenv("BENCH_ONLY", "no-such-script")  # no benchmark runs: intro, machine, targets
    assert run_all.main() == 0
    text = doc.read_text()
    assert "<!-- bench:intro -->" in text and "<!-- bench:machine -->" in text and "Interpreter: " in text
    assert f"report: {doc}" in capsys.readouterr().out
