"""The browser's Back button on the web page's lists, in a real browser (Debian's Chromium via
Playwright) against the real stack: a list shows what the page shows, not what was last picked."""

from __future__ import annotations

import re

import pytest

from tests.ui.browser import api_submit, patient_expect

pytestmark = pytest.mark.slow


def test_back_after_a_filter_shows_the_filter_the_table_has(page, stack):
    """Back from ?status=failed to the unfiltered list showed Status "failed" over a table of every
    status: the browser restored the list's last pick into the page it came back to, whose script
    had already loaded the table for the address's filter (none)."""
    expect = patient_expect()
    api_submit(stack.url, "incidents_by_weekday")
    page.goto(f"{stack.url}/ui/jobs?operation=incidents_by_weekday")
    expect(page.locator("#jobs a").first).to_be_visible()
    page.select_option("#f-status", "failed")  # a pick with the mouse applies at once
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.locator("#jobs")).to_contain_text("No jobs match.")
    page.go_back()
    page.wait_for_url(re.compile(r"/ui/jobs\?operation=incidents_by_weekday$"))
    expect(page.locator("#jobs a").first).to_be_visible()
    assert page.input_value("#f-status") == ""
    assert page.input_value("#f-operation") == "incidents_by_weekday"
    assert page.problems == []


def test_back_to_the_submit_page_shows_the_operation_of_its_form(page, stack):
    """An operation moved to with the arrow keys (not applied: Enter applies) and then left by a link
    came back, on Back, in the list over another operation's form."""
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/submit?operation=top_locations")
    expect(page.locator("#submit-form")).to_be_visible()
    page.focus("#operation")
    page.keyboard.press("ArrowDown")
    assert page.input_value("#operation") != "top_locations"  # moved, not applied
    page.click("nav a[href$='ui/data']")
    page.wait_for_url(re.compile(r"/ui/data$"))
    page.go_back()
    page.wait_for_url(re.compile(r"operation=top_locations$"))
    expect(page.locator("#submit-form")).to_be_visible()
    assert page.input_value("#operation") == page.get_attribute("#submit-form", "data-operation") == "top_locations"
    assert page.problems == []


def test_back_from_a_job_and_reload_return_to_the_page_of_the_list_it_was_on(page, stack):
    """Paged Older to page 2 or 3, opened a job, pressed Back (or reloaded): page 1 again, with no way
    back to the later page but paging there anew. The page shown is kept in the history entry."""
    expect = patient_expect()
    for _ in range(26):  # two pages of incidents_by_issue jobs (25 a page)
        api_submit(stack.url, "incidents_by_issue")
    page.goto(f"{stack.url}/ui/jobs?operation=incidents_by_issue")
    expect(page.locator("#page-info")).to_contain_text("Page 1")
    first_page = page.locator("#jobs a").first.text_content()
    page.click("#older")
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    second_page = page.locator("#jobs a").first.text_content()
    assert second_page != first_page
    page.locator("#jobs a").first.click()
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    page.go_back()
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    expect(page.locator("#jobs a").first).to_have_text(second_page)
    page.reload()
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    page.click("#newer")  # and the pages before it are kept too
    expect(page.locator("#page-info")).to_contain_text("Page 1")
    expect(page.locator("#jobs a").first).to_have_text(first_page)
    assert page.problems == []
