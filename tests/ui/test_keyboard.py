"""The web page from the keyboard alone, in a real browser (Debian's Chromium via Playwright)
against the real stack: where the focus is after each press."""

from __future__ import annotations

import pytest

from tests.ui.test_browser import FINAL_TIMEOUT, _api_submit, _context, _expect, browser, page, pw, stack  # noqa: F401

pytestmark = pytest.mark.slow

FOCUSED = "() => document.activeElement ? document.activeElement.id || document.activeElement.tagName : null"


def test_paging_the_jobs_table_to_either_end_keeps_the_focus_in_the_pager(page, stack):  # noqa: F811
    """Enter on "Older →" that reached the last page, or on "← Newer" back to the first, disabled
    the button that had the focus, which drops it to the page's start: the next Tab began again at
    "Skip to content", eight stops from the pager. The focus now moves to the other button."""
    expect = _expect()
    for n in range(1, 27):  # more than one page of 25
        _api_submit(stack.url, "top_locations", {"n": n})
    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator("#older")).to_be_enabled()
    page.focus("#older")
    pages = 1
    while True:
        page.keyboard.press("Enter")
        pages += 1
        expect(page.locator("#page-info")).to_contain_text(f"Page {pages} ")
        if page.locator("#older").is_disabled():
            break
        assert page.evaluate(FOCUSED) == "older"
    assert page.evaluate(FOCUSED) == "newer"  # the last page: Older is off, the focus on Newer

    while pages > 1:
        page.keyboard.press("Enter")
        pages -= 1
        expect(page.locator("#page-info")).to_contain_text(f"Page {pages} ")
    expect(page.locator("#newer")).to_be_disabled()
    assert page.evaluate(FOCUSED) == "older"  # the first page: Newer is off, the focus on Older
    page.keyboard.press("Enter")
    expect(page.locator("#page-info")).to_contain_text("Page 2 ")
    assert page.problems == []
