"""The web page from the keyboard alone, in a real browser (Debian's Chromium via Playwright)
against the real stack: where the focus is after each press."""

from __future__ import annotations

import json

import pytest

from tests.ui.browser import api_submit, new_context, patient_expect

pytestmark = pytest.mark.slow

FOCUSED = "() => document.activeElement ? document.activeElement.id || document.activeElement.tagName : null"


def test_paging_the_jobs_table_to_either_end_keeps_the_focus_in_the_pager(page, stack):
    """Enter on "Older →" that reached the last page, or on "← Newer" back to the first, disabled
    the button that had the focus, which drops it to the page's start: the next Tab began again at
    "Skip to content", eight stops from the pager. The focus now moves to the other button."""
    expect = patient_expect()
    for n in range(1, 27):  # more than one page of 25
        api_submit(stack.url, "top_locations", {"n": n})
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


CLAIMED = json.dumps(
    {
        "error": "job_in_progress",
        "message": "a worker has already claimed this job; it cannot be cancelled",
        "status": "in-progress",
    }
)


def test_cancel_says_why_it_was_refused_and_the_focus_stays_on_the_actions(page, idle_stack):
    """Cancel on a job a worker had just claimed: the API refuses (409) and the page put its reason in
    the notice, then at once started following the job again, whose first answer cleared the notice:
    the press seemed to do nothing. Cancel that works hides Cancel, which held the focus, and the
    focus fell to the page's start; it now goes to Submit again."""
    expect = patient_expect()
    job_id = api_submit(idle_stack.url, "top_locations", {"n": 3})
    page.route(
        f"**/jobs/{job_id}",
        lambda route: (
            route.fulfill(status=409, content_type="application/json", body=CLAIMED)
            if route.request.method == "DELETE"
            else route.continue_()
        ),
    )
    page.goto(f"{idle_stack.url}/ui/jobs/{job_id}")
    expect(page.locator("#a-cancel")).to_be_visible()
    page.focus("#a-cancel")
    page.keyboard.press("Enter")
    notice = page.locator("#notice")
    expect(notice).to_have_text("a worker has already claimed this job; it cannot be cancelled")
    page.wait_for_timeout(3000)
    expect(notice).to_have_text("a worker has already claimed this job; it cannot be cancelled")  # still said

    page.unroute(f"**/jobs/{job_id}")
    page.keyboard.press("Enter")  # the focus is still on Cancel: press it again, the API now takes it
    expect(page.locator("#j-status")).to_have_text("cancelled")
    expect(notice).to_have_text("Cancelled.")
    expect(page.locator("#a-cancel")).to_be_hidden()
    assert page.evaluate(FOCUSED) == "a-again"
    assert page.problems == []


def test_the_jobs_tables_live_update_leaves_the_focus_on_the_job_link(page, idle_stack):
    """Every 3 s poll redrew the jobs table from scratch: a keyboard user on a job's link was sent back
    to the page's start ("Skip to content"), mid-table. Rows are now kept per job and only changed
    cells replaced: the focused link stays, the same element (a screen reader does not read it again),
    while a new job appears above it."""
    expect = patient_expect()
    url = idle_stack.url
    ids = [api_submit(url, "top_locations", {"n": n}) for n in (1, 2, 3)]
    page.goto(f"{url}/ui/jobs")
    link = page.locator(f'#jobs a[href$="{ids[1]}"]')
    expect(link).to_be_visible()
    link.focus()
    page.evaluate("() => { document.activeElement.marked = 'yes'; }")
    newer = api_submit(url, "top_locations", {"n": 4})
    expect(page.locator("#jobs tr").first).to_contain_text(newer[:8])  # a poll drew the change
    page.wait_for_timeout(3500)  # and one more, with nothing changed
    assert page.evaluate("() => [document.activeElement.getAttribute('href'), document.activeElement.marked]") == [
        f"../ui/jobs/{ids[1]}",
        "yes",
    ]


# the focused element, and whether it draws an outline (the focus ring)
RING = """() => { const n = document.activeElement, c = getComputedStyle(n);
  return [n.tagName + '.' + n.className, c.outlineStyle !== 'none' && parseFloat(c.outlineWidth) >= 2]; }"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_control_on_the_docs_page_shows_where_the_keyboard_focus_is(browser, idle_stack, scheme):
    """Tabbing through /docs, Swagger UI drew no focus ring on the request body's field, and in the
    dark scheme none on the operations' buttons, the lists and the fields either: a keyboard user
    could not see where the focus was (and the header's links had only the browser's thin 1 px ring).
    docs.css gives every control the web page's ring."""
    expect = patient_expect()
    context = new_context(browser, color_scheme=scheme, viewport={"width": 1280, "height": 900})
    unringed = set()
    try:
        page = context.new_page()
        page.goto(f"{idle_stack.url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_be_visible()
        for op_id in ("operations-jobs-submit", "operations-jobs-listJobs"):
            page.locator(f"#{op_id} .opblock-summary-control").click()
            page.locator(f"#{op_id} .try-out__btn").click()
        page.locator(".docs-bar a").first.focus()
        for _ in range(40):
            page.keyboard.press("Tab")
            what, ringed = page.evaluate(RING)
            if not ringed:
                unringed.add(what)
    finally:
        context.close()
    assert unringed == set(), unringed


def test_the_docs_authorize_dialog_keeps_the_keyboard_inside_until_it_closes(page, idle_stack):
    """Tab past the Authorize dialog's last button (or Shift+Tab before its first) went on into the
    operations behind its backdrop, where the focus could not be seen. It now wraps round inside the
    dialog; Escape closes it and the focus is back on the Authorize button."""
    expect = patient_expect()
    page.goto(f"{idle_stack.url}/docs")
    opener = page.locator(".auth-wrapper .btn.authorize")
    opener.focus()
    page.keyboard.press("Enter")
    expect(page.locator(".modal-ux [role=dialog][aria-modal=true]")).to_be_visible()
    inside = []
    for key in ["Tab"] * 6 + ["Shift+Tab"] * 6:
        page.keyboard.press(key)
        inside.append(page.evaluate("() => !!document.activeElement.closest('.modal-ux')"))
    assert all(inside), inside
    page.keyboard.press("Escape")
    expect(page.locator(".modal-ux")).to_have_count(0)
    expect(opener).to_be_focused()


def test_every_stop_on_the_pages_shows_the_focus_ring(page, stack):
    """The scroll boxes a keyboard can enter (the jobs and workers tables', the charts'), and the
    result's "Result as JSON" summary, had only the browser's thin 1 px ring, where links, buttons and
    fields have the page's 3 px one. Tabbing through the overview, the jobs list and a finished job's
    page, every stop now shows the page's ring."""
    expect = patient_expect()
    job_id = api_submit(stack.url, "top_locations", {"n": 3})
    unringed = {}
    for path, ready in (
        (f"/ui/jobs/{job_id}", "#j-result svg"),
        ("/ui/", "#recent-chart"),
        ("/ui/jobs", "#jobs a"),
    ):
        page.goto(stack.url + path)
        expect(page.locator(ready).first).to_be_visible()
        for _ in range(30):
            page.keyboard.press("Tab")
            what, ringed = page.evaluate(RING)
            if not ringed and what != "BODY.":  # past the last stop, the browser's own controls
                unringed.setdefault(path, set()).add(what)
    assert unringed == {}, unringed
