"""The web page open in two tabs, in a real browser (Debian's Chromium via Playwright) against the
real stack: what one tab does to a job, the other shows once it next hears of it."""

from __future__ import annotations

import pytest
import requests

from tests.ui.browser import api_submit, patient_expect

pytestmark = pytest.mark.slow


def _job_page(context, url, job_id):
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    page.goto(f"{url}/ui/jobs/{job_id}")
    return page


def test_a_job_deleted_in_another_tab_is_said_gone_not_shown_complete(page, stack):
    """Two tabs on one finished job; Delete in the first. The second went on showing it "complete"
    with Delete and Download: Delete answered "no job ... (unknown, deleted or expired)" over a page
    still offering the result, and Download got the API's 404 JSON. A press (or the tab shown again)
    now finds it gone: the status says so, Delete and Download go, Submit again stays and has the focus."""
    expect = patient_expect()
    job_id = api_submit(stack.url, "top_locations", {"n": 3})
    first = page
    first.on("dialog", lambda d: d.accept())
    first.remove_listener("dialog", first.dialog_guard)
    first.goto(f"{stack.url}/ui/jobs/{job_id}")
    second = _job_page(page.context, stack.url, job_id)
    for pg in (first, second):
        expect(pg.locator("#j-status")).to_have_text("complete")
    first.click("#a-delete")
    first.wait_for_url(f"{stack.url}/ui/jobs")

    second.bring_to_front()
    second.focus("#a-delete")
    second.keyboard.press("Enter")
    expect(second.locator("#j-status")).to_have_text("gone")
    expect(second.locator("#notice")).to_contain_text("does not exist (deleted or expired, perhaps in another tab)")
    for button in ("#a-delete", "#a-download", "#a-cancel"):
        expect(second.locator(button)).to_be_hidden()
    expect(second.locator("#a-again")).to_be_focused()
    assert page.problems == []


def test_a_job_deleted_elsewhere_is_said_gone_when_its_tab_is_shown_again(page, stack):
    """The same, heard of without a press: switching back to the tab looks at the job again.
    (Headless Chromium keeps every tab visible, so the test sends the event a tab switch sends.)"""
    expect = patient_expect()
    job_id = api_submit(stack.url, "top_locations", {"n": 3})
    page.goto(f"{stack.url}/ui/jobs/{job_id}")
    expect(page.locator("#j-status")).to_have_text("complete")
    assert requests.delete(f"{stack.url}/jobs/{job_id}", timeout=10).status_code == 200
    page.wait_for_timeout(1000)
    expect(page.locator("#j-status")).to_have_text("complete")  # a finished job is not polled
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("#j-status")).to_have_text("gone")
    expect(page.locator("#a-download")).to_be_hidden()
    assert page.problems == []
