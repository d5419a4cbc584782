"""A job's result as the web page draws it, in a real browser (Debian's Chromium via Playwright)
against the real stack: what the charts leave out is said, numbers are shown as stored."""

from __future__ import annotations

import pytest

from tests.ui.browser import FINAL_TIMEOUT, api_submit, new_context, patient_expect

pytestmark = pytest.mark.slow


def _open_finished(page, url, job_id):
    expect = patient_expect()
    page.goto(f"{url}/ui/jobs/{job_id}")
    expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    return expect


def test_a_month_of_daily_counts_draws_every_day(page, stack):
    """daily_counts over January (31 days) drew 30 bars: the bar chart stops at 30 and only series
    over 40 days were drawn as columns, so the 31st was left out with nothing saying so."""
    job_id = api_submit(stack.url, "daily_counts", {"start": "2024-01-01", "end": "2024-01-31"})
    expect = _open_finished(page, stack.url, job_id)
    chart = page.locator("#j-result .counts .chart svg")
    expect(chart).to_contain_text("2024-01-31")  # the columns' last label: the whole month is drawn
    assert page.locator("#j-result .chart-part").count() == 0
    assert page.problems == []


def test_a_chart_of_part_of_the_counts_says_so(page, stack):
    """top_locations n=100: the chart draws the first 30 bars; the page says it shows 30 of 100."""
    job_id = api_submit(stack.url, "top_locations", {"n": 100})
    expect = _open_finished(page, stack.url, job_id)
    heading = page.locator("#j-result .counts h3").first.text_content()
    total = int(heading.rsplit("(", 1)[1].rstrip(")"))
    assert total > 30  # (the sample has more than 30 addresses)
    assert page.locator("#j-result .counts .chart svg text.label").count() == 30
    expect(page.locator("#j-result .chart-part")).to_have_text(
        f"The chart shows the first 30 of {total}; the table below lists them all, the JSON every one."
    )
    assert f"the first 30 of {total}" in page.locator("#j-result .counts .chart svg").get_attribute("aria-label")
    assert page.problems == []


@pytest.mark.parametrize(
    ("operation", "params", "days"),
    [
        ("daily_counts", {"start": "2010-01-01", "end": "2010-03-31"}, True),  # columns: 90 days, before the data
        ("daily_counts", {"start": "2010-01-01", "end": "2010-01-10"}, True),  # bars: 10 days
        ("incidents_within_radius", {"latitude": 30.5, "longitude": -97.5, "radius_km": 0.01}, False),  # by_issue {}
    ],
)
def test_a_result_with_no_incidents_says_so_instead_of_an_empty_chart(page, stack, operation, params, days):
    """daily_counts for a range before the data drew an empty frame whose y-axis topped at 1, which
    read as a broken chart (or as about one a day); incidents_within_radius off every road showed
    "by_issue {}". Each now says there are no incidents in the range, draws no chart, and (for a
    range of days) keeps the table of zeros."""
    job_id = api_submit(stack.url, operation, params)
    expect = _open_finished(page, stack.url, job_id)
    said = page.locator("#j-result .counts p.empty")
    expect(said).to_have_text("No incidents in this range: every day is 0." if days else "No incidents in this range.")
    assert page.locator("#j-result svg").count() == 0
    assert page.locator("#j-result .counts table").count() == (1 if days else 0)
    assert "{}" not in page.locator("#j-result").inner_text()
    assert page.problems == []


def test_the_overview_with_no_job_finished_lately_says_so_instead_of_an_empty_chart(page, idle_stack):
    """No job finished in the last 15 minutes (no worker, a quiet evening): the overview drew an
    empty frame whose y-axis topped at 1. It now says no job finished, and draws the chart once one does."""
    expect = patient_expect()
    page.goto(f"{idle_stack.url}/ui/")
    expect(page.locator("#recent-chart p.empty")).to_have_text("No job finished in the last 15 minutes.")
    assert page.locator("#recent-chart svg").count() == 0
    expect(page.locator("#recent-complete")).to_have_text("0")
    assert page.problems == []


def test_a_result_number_shows_every_decimal_it_has(page, stack):
    """incidents_within_radius answers the point it searched around: 30.2672, -97.7431 showed as
    30.267, -97.743 (toLocaleString rounds to 3 decimals), a point about 20 m away."""
    job_id = api_submit(
        stack.url, "incidents_within_radius", {"latitude": 30.2672, "longitude": -97.7431, "radius_km": 1.5}
    )
    expect = _open_finished(page, stack.url, job_id)
    scalars = page.locator("#j-result > dl.pairs")
    expect(scalars).to_contain_text("30.2672")
    expect(scalars).to_contain_text("-97.7431")
    expect(scalars).to_contain_text("1.5")
    assert page.problems == []


def test_the_result_json_scrolls_from_the_keyboard(browser, stack):
    """The "Result as JSON" box opened on a long result is a box that scrolls (480 px high) with nothing in it
    to focus: axe-core's scrollable-region-focusable (serious). Recent Chromium lets a keyboard into
    such a box by itself; Firefox and Safari do not. The box now takes the focus in every browser."""
    from tests.ui.browser import axe_source

    expect = patient_expect()
    job_id = api_submit(stack.url, "incidents_by_hour")
    context = new_context(browser, bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
        page.click("#j-json-box summary")
        box = page.locator("#j-json")
        expect(box).to_be_visible()
        assert page.evaluate("(e) => e.scrollHeight > e.clientHeight", box.element_handle())  # it does scroll
        page.focus("#j-json-box summary")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "j-json"
        page.keyboard.press("PageDown")  # (the scroll may be smooth: wait for it to move)
        page.wait_for_function("document.getElementById('j-json').scrollTop > 0", timeout=10_000)
        page.add_script_tag(content=axe_source())
        result = page.evaluate("axe.run('#j-json-box', {resultTypes: ['violations']})")
        assert [v["id"] for v in result["violations"]] == []
    finally:
        context.close()


def test_charts_on_a_phone_keep_readable_text_and_scroll_in_their_box(browser, stack):
    """At 375 px the charts scaled down with the page, and their 11 px labels came out 4-5 px tall
    (the result's bar chart, the overview's last 15 minutes). Below 560 px a chart's box scrolls
    sideways instead, and takes the keyboard focus as the tables' boxes do; the page itself does not
    scroll sideways. axe: no violation in either box (scrollable-region-focusable, landmark names)."""
    from tests.ui.browser import axe_source

    expect = patient_expect()
    job_id = api_submit(stack.url, "top_locations", {"n": 10})
    context = new_context(browser, bypass_csp=True, viewport={"width": 375, "height": 800})
    tallest_text = "(sel) => Math.max(...[...document.querySelectorAll(sel + ' svg text')].map(t => t.getBoundingClientRect().height))"
    try:
        page = context.new_page()
        for address, box in ((f"/ui/jobs/{job_id}", "#j-result .chart"), ("/ui/", "#recent-chart")):
            page.goto(stack.url + address)
            expect(page.locator(box + " svg text").first).to_be_attached(timeout=FINAL_TIMEOUT)
            assert page.evaluate(tallest_text, box) >= 9, address
            assert page.evaluate(
                "(s) => { const e = document.querySelector(s); return e.scrollWidth > e.clientWidth }", box
            )
            assert page.get_attribute(box, "tabindex") == "0" and page.get_attribute(box, "aria-label")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), address
            page.add_script_tag(content=axe_source())
            result = page.evaluate("(s) => axe.run(document, {resultTypes: ['violations']})", box)
            assert [v["id"] for v in result["violations"]] == [], (address, result["violations"])
    finally:
        context.close()


def test_a_long_error_scrolls_from_the_keyboard(browser, idle_stack):
    """A failed job's error box is at most 480 px high: a long message (an exception naming every
    column it looked through; on a phone a few hundred characters are enough) scrolled in a box with
    nothing in it to focus, axe-core's scrollable-region-focusable (serious), as the result's JSON box
    once did. The error box now takes the focus (a region named "Error message")."""
    from jobqueue.jobs import JobStatus

    from tests.api.support import finish
    from tests.ui.browser import axe_source

    expect = patient_expect()
    job_id = api_submit(idle_stack.url, "incidents_by_road", {"road": "Ñandú Straße 東京"})
    columns = ", ".join(f"'Column number {i} of the traffic incidents export'" for i in range(60))
    finish(idle_stack.jobs_client(), job_id, status=JobStatus.FAILED, error=f"KeyError: none of [{columns}]")
    context = new_context(browser, bypass_csp=True, viewport={"width": 375, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{idle_stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#j-status")).to_have_text("failed", timeout=FINAL_TIMEOUT)
        box = page.locator("#j-error")
        expect(box).to_contain_text("KeyError")
        assert page.evaluate("(e) => e.scrollHeight > e.clientHeight", box.element_handle())  # it does scroll
        page.focus("#a-again")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.id") == "j-error"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.add_script_tag(content=axe_source())
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        assert [v["id"] for v in result["violations"]] == [], result["violations"]
    finally:
        context.close()


LONE_SURROGATE = r"(s) => /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)"


def test_a_long_unicode_parameter_is_cut_between_characters(page, stack):
    """The jobs table shows a job's parameters cut to 80 characters, counted in UTF-16 units: a road
    of emoji (each two units) was cut through one, whose lone half showed as a replacement mark
    before the "…". It is cut between characters now (the bar chart's 40-character labels too)."""
    expect = patient_expect()
    road = "x" + "🚗" * 98  # 99 characters, within the road's 100
    api_submit(stack.url, "incidents_by_road", {"road": road})
    page.goto(f"{stack.url}/ui/jobs?operation=incidents_by_road")
    cell = page.locator("#jobs tr td.params").first
    expect(cell).to_contain_text("🚗")
    text = cell.text_content()
    assert text.endswith("…") and len(text) == 80, text  # (Python counts characters)
    assert not page.evaluate(LONE_SURROGATE, text), ascii(text[-4:])
    assert page.problems == []


def test_the_jobs_table_with_no_match_scrolls_from_the_keyboard_on_a_phone(browser, stack):
    """On a 320 px phone the jobs table scrolls sideways in its box. With jobs in it the keyboard got
    in through their links; a filter that matches nothing ("No jobs match.") left a scrolling box with
    nothing to focus, axe-core's scrollable-region-focusable (serious). The box takes the focus, as
    the overview's workers table does."""
    from tests.ui.browser import axe_source

    expect = patient_expect()
    context = new_context(browser, bypass_csp=True, viewport={"width": 320, "height": 700})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/jobs?status=cancelled&operation=plot_incidents_by_weekday")
        expect(page.locator("#jobs")).to_have_text("No jobs match.")
        wrap = page.locator(".table-wrap")
        assert page.evaluate("(e) => e.scrollWidth > e.clientWidth", wrap.element_handle())  # it does scroll
        page.focus("#live")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('table-wrap')")
        page.add_script_tag(content=axe_source())
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        assert [v["id"] for v in result["violations"]] == [], result["violations"]
    finally:
        context.close()
