"""The web page under the display settings people set for themselves, in a real browser (Debian's
Chromium via Playwright) against the real stack: forced colours (Windows High Contrast), and a dark
colour scheme (prefers-color-scheme: dark)."""

from __future__ import annotations

import re

import pytest

from tests.ui.browser import FINAL_TIMEOUT, api_submit, axe_source, new_context, patient_expect

pytestmark = pytest.mark.slow


def test_forced_colours_keep_buttons_chart_labels_and_legend_visible(browser, stack):
    """In forced colours the page's buttons (background, no border) lost their background and read
    as plain words; on a dark high-contrast theme the charts' labels and axis kept their dark ink
    (forced colours leave SVG fill alone) and all but vanished on black; and the overview's legend
    swatches were blanked to the background, so "completed" and "failed" named no colour."""
    expect = patient_expect()
    job_id = api_submit(stack.url, "top_locations", {"n": 5})
    context = new_context(browser, forced_colors="active", color_scheme="dark", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
        assert page.evaluate("() => matchMedia('(forced-colors: active)').matches")
        ink = page.evaluate("() => getComputedStyle(document.body).color")  # the theme's text colour
        for selector in ("#a-delete", "#a-again"):
            border = page.evaluate(
                "(s) => { const c = getComputedStyle(document.querySelector(s)); return [c.borderTopWidth, c.borderTopStyle]; }",
                selector,
            )
            assert border == ["1px", "solid"], (selector, border)
        fills = page.evaluate(
            "() => [...document.querySelectorAll('#j-result svg text')].map((t) => getComputedStyle(t).fill)"
        )
        assert fills and set(fills) == {ink}, (fills, ink)

        page.goto(f"{stack.url}/ui/")
        expect(page.locator("#recent-chart svg")).to_be_attached()
        swatch, bar = page.evaluate(
            "() => [getComputedStyle(document.querySelector('.key-complete')).backgroundColor,"
            " getComputedStyle(document.querySelector('#recent-chart rect.complete')).fill]"
        )
        assert swatch == bar  # the dark scheme's orange, the same in the legend and the chart
        axis = page.evaluate("() => getComputedStyle(document.querySelector('#recent-chart .axis')).stroke")
        assert axis == ink
    finally:
        context.close()


# WCAG contrast of an element's text (or an SVG shape's fill) against the colour of the nearest box
# behind it with a background; axe-core's color-contrast rule skips SVG text, so the charts are measured here.
CONTRAST = """(args) => {
  const [selector, prop] = args;
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => { const v = rgb(c).map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const behind = (n) => { for (; n; n = n.parentElement) { const b = getComputedStyle(n).backgroundColor;
    if (b && b !== 'rgba(0, 0, 0, 0)') return b; } return 'rgb(255, 255, 255)'; };
  return [...document.querySelectorAll(selector)].map((n) => {
    const a = lum(getComputedStyle(n)[prop]), b = lum(behind(n));
    return Math.round(100 * (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)) / 100;
  });
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_each_colour_scheme_passes_the_contrast_checks_charts_included(browser, stack, scheme):
    """With the system set to dark (prefers-color-scheme: dark) every page stayed light: a white glare
    at night, and the one page in the student's dark desktop. Both schemes now pass axe-core (no
    serious or critical violation, colour contrast included) on every page, with a notice, a banner
    and a field error showing; the charts' SVG text (which axe does not check) keeps 4.5:1 and their
    bars 3:1 against the card, and a plot (a PNG drawn on white) keeps a white panel behind it."""
    expect = patient_expect()
    bars = api_submit(stack.url, "top_locations", {"n": 5})
    days = api_submit(stack.url, "daily_counts", {"start": "2024-01-01", "end": "2024-03-31"})
    plot = api_submit(stack.url, "plot_incidents_by_hour")
    context = new_context(browser, color_scheme=scheme, bypass_csp=True, viewport={"width": 1280, "height": 900})
    source = axe_source()
    report = {}
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/")
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert (max(int(c) for c in re.findall(r"\d+", background)) < 64) == (scheme == "dark"), background
        page.route(
            "**/queue",
            lambda route: route.fulfill(
                status=503,
                content_type="application/json",
                body='{"error": "redis_unavailable", "message": "the job store (Redis) is unreachable"}',
            ),
        )
        for path, ready in [
            ("/ui/", "#notice"),
            ("/ui/jobs", "#jobs a"),
            ("/ui/jobs?status=bogus", "[role=alert]"),
            (f"/ui/jobs/{bars}", "#j-result svg"),
            (f"/ui/jobs/{days}", "#j-result svg"),
            (f"/ui/jobs/{plot}", "#j-png"),
            ("/ui/data", "main dl"),
        ]:
            page.goto(stack.url + path)
            expect(page.locator(ready).first).to_be_visible(timeout=FINAL_TIMEOUT)
            page.add_script_tag(content=source)
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            report[path] = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
            if "svg" in ready:
                assert min(page.evaluate(CONTRAST, ["#j-result svg text", "fill"])) >= 4.5, path
                assert min(page.evaluate(CONTRAST, ["#j-result svg rect", "fill"])) >= 3, path
                assert all(c >= 3 for c in page.evaluate(CONTRAST, ["#j-result svg .axis", "stroke"])), path
            if ready == "#j-png":
                panel = page.evaluate("() => getComputedStyle(document.getElementById('j-png')).backgroundColor")
                assert panel == "rgb(255, 255, 255)"
        page.goto(f"{stack.url}/ui/submit?operation=daily_counts")
        page.fill("#p-start", "2024-02-01")
        page.fill("#p-end", "2024-01-01")  # the API refuses it: its error shows next to the field
        page.click("#submit-form button[type=submit]")
        expect(page.locator("#p-end-error")).to_contain_text("before")
        page.add_script_tag(content=source)
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        report["submit"] = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
    finally:
        context.close()
    assert all(not bad for bad in report.values()), report


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_printed_result_is_dark_ink_on_paper_with_the_whole_json_and_no_controls(browser, stack, scheme):
    """Printing a job's result (Ctrl+P) from a dark system printed the dark scheme's light ink on white
    paper (a printer drops the page's background): the numbers near-invisible. The print also carried
    the header, the buttons and the notice, and cut the JSON at its 480 px box. Printed, the page is
    now the light scheme's ink, the result alone, and the JSON whole."""
    expect = patient_expect()
    job_id = api_submit(stack.url, "daily_counts", {"start": "2024-01-01", "end": "2024-03-31"})
    context = new_context(browser, color_scheme=scheme, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#j-result svg")).to_be_visible(timeout=FINAL_TIMEOUT)
        page.click("#j-json-box summary")
        page.emulate_media(media="print")
        white = "(s) => { const n = document.querySelector(s); n.style.background = '#fff'; return true; }"
        page.evaluate(white, "body")  # paper, whatever the page's background
        assert min(page.evaluate(CONTRAST, ["main h1, main h2, .pairs dd, .grid td", "color"])) >= 4.5
        assert min(page.evaluate(CONTRAST, ["#j-result svg text", "fill"])) >= 4.5
        shown = page.evaluate(
            "() => ['header.top', '.actions', '#notice'].map((s) => getComputedStyle(document.querySelector(s)).display)"
        )
        assert shown == ["none", "none", "none"], shown
        json_box = page.evaluate(
            "() => { const n = document.getElementById('j-json'); return [n.scrollHeight, n.clientHeight]; }"
        )
        assert json_box[0] > 480 and json_box[0] <= json_box[1] + 1, json_box  # all of it, no scroll box
    finally:
        context.close()


# elements whose computed style still moves: a transition or an animation with a duration
MOVING = """() => [...document.querySelectorAll('*')].filter((n) => { const s = getComputedStyle(n);
  return parseFloat(s.transitionDuration) + parseFloat(s.animationDuration) > 0; }).map((n) => n.outerHTML.slice(0, 80))"""


def test_with_reduced_motion_nothing_moves_on_any_page(browser, stack):
    """A system set to reduce motion still got Swagger UI's on /docs: a field shaken when Execute finds
    it empty, a spinning loader, sliding and fading panels (59 elements with a transition or an
    animation). docs.css stops them under prefers-reduced-motion; the web page's own pages have none."""
    expect = patient_expect()
    context = new_context(browser, reduced_motion="reduce", viewport={"width": 1280, "height": 900})
    moving = {}
    try:
        page = context.new_page()
        for path in ("/ui/", "/ui/jobs", "/ui/submit", "/ui/data"):
            page.goto(stack.url + path)
            expect(page.locator("main h1")).to_be_visible()
            moving[path] = page.evaluate(MOVING)
        page.goto(f"{stack.url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_be_visible(timeout=FINAL_TIMEOUT)
        page.locator(".auth-wrapper .btn.authorize").click()
        expect(page.locator(".modal-ux")).to_be_visible()
        moving["/docs, Authorize dialog"] = page.evaluate(MOVING)
        page.keyboard.press("Escape")
        op = page.locator("#operations-jobs-getJob")
        op.locator(".opblock-summary-control").click()
        op.locator(".try-out__btn").click()
        op.locator(".execute").click()  # no job id typed: Swagger UI marks the field invalid
        expect(op.locator("input.invalid")).to_be_visible()
        moving["/docs, Execute with a field empty"] = page.evaluate(MOVING)
    finally:
        context.close()
    assert all(not found for found in moving.values()), moving
