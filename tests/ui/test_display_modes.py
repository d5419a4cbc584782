"""The web page under the display settings people set for themselves, in a real browser (Debian's
Chromium via Playwright) against the real stack: forced colours (Windows High Contrast)."""

from __future__ import annotations

import pytest

from tests.ui.test_browser import FINAL_TIMEOUT, _api_submit, _context, _expect, browser, pw, stack  # noqa: F401

pytestmark = pytest.mark.slow


def test_forced_colours_keep_buttons_chart_labels_and_legend_visible(browser, stack):  # noqa: F811
    """In forced colours the page's buttons (background, no border) lost their background and read
    as plain words; on a dark high-contrast theme the charts' labels and axis kept their dark ink
    (forced colours leave SVG fill alone) and all but vanished on black; and the overview's legend
    swatches were blanked to the background, so "completed" and "failed" named no colour."""
    expect = _expect()
    job_id = _api_submit(stack.url, "top_locations", {"n": 5})
    context = _context(browser, forced_colors="active", color_scheme="dark", viewport={"width": 1280, "height": 900})
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
        assert swatch == bar == "rgb(191, 87, 0)"
        axis = page.evaluate("() => getComputedStyle(document.querySelector('#recent-chart .axis')).stroke")
        assert axis == ink
    finally:
        context.close()
