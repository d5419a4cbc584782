"""The web page while the API or its Redis is away or slow, in a real browser (Debian's Chromium
via Playwright) against the real stack: what a screen reader hears while the polls go on, what each
page says when its requests fail, that it recovers by itself when they work again, and answers
that come back late."""

from __future__ import annotations

import json
import signal

import pytest
import requests

from devstack.stack import running_stack
from tests.ui.browser import FINAL_TIMEOUT, TOKEN, api_submit, new_context, patient_expect

pytestmark = pytest.mark.slow

REDIS_GONE = json.dumps(
    {"error": "redis_unavailable", "message": "the job store (Redis) is unreachable; retry shortly"}
)

# Every write into a live region (aria-live, role=status/alert) is something a screen reader may
# speak: record each one with the text it left.
WATCH_LIVE = """() => {
  window.__spoken = [];
  document.querySelectorAll('[aria-live], [role=status], [role=alert]').forEach((n) => {
    new MutationObserver(() => window.__spoken.push((n.id || n.className) + ': ' + n.textContent))
      .observe(n, { childList: true, subtree: true, characterData: true });
  });
}"""


def _spoken(page):
    return page.evaluate("() => window.__spoken.splice(0)")


def test_a_live_region_speaks_a_change_once_not_on_every_poll(page, stack):
    """The jobs table polls every 3 s and wrote "Page 1 · N shown" (aria-live) each time, and with
    Redis gone the notice (role=status) wrote "the job store (Redis) is unreachable" each time: a
    screen reader said the same line again every 3 s for as long as the page stayed open."""
    expect = patient_expect()
    api_submit(stack.url, "unique_issues")
    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator("#page-info")).to_contain_text("shown")
    page.evaluate(WATCH_LIVE)
    page.wait_for_timeout(7000)  # two polls or more, nothing changed
    assert _spoken(page) == []

    page.route("**/jobs?*", lambda route: route.fulfill(status=503, content_type="application/json", body=REDIS_GONE))
    expect(page.locator("#notice")).to_have_text("the job store (Redis) is unreachable; retry shortly")
    page.wait_for_timeout(7000)
    assert _spoken(page) == ["notice: the job store (Redis) is unreachable; retry shortly"]  # once

    page.unroute("**/jobs?*")
    expect(page.locator("#notice")).to_be_hidden()
    page.wait_for_timeout(4000)
    assert _spoken(page) == ["notice: "]  # cleared once; the table's line is as it was
    assert page.problems == []


def _status_regions(page):
    """The role=status nodes of the page's accessibility tree (what a screen reader is given)."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    return [n for n in nodes if n.get("role", {}).get("value") == "status" and not n.get("ignored")]


def test_the_notice_is_in_the_accessibility_tree_before_its_first_message(page, stack):
    """The notice (role=status) was hidden while empty, and a hidden element is not in the
    accessibility tree: its first message (Redis gone, the API unreachable) was written as the
    region appeared, which screen readers may not announce. It is now there from the start, with
    nothing to see until a message comes."""
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator("#page-info")).to_contain_text("shown")
    expect(page.locator("#notice")).to_be_hidden()  # nothing to see
    assert len(_status_regions(page)) == 1

    page.route("**/jobs?*", lambda route: route.fulfill(status=503, content_type="application/json", body=REDIS_GONE))
    expect(page.locator("#notice")).to_have_text("the job store (Redis) is unreachable; retry shortly")
    expect(page.locator("#notice")).to_be_visible()
    assert page.problems == []


def test_the_stalled_banner_is_said_once_not_on_every_poll(page, idle_stack):
    """A job waiting and no worker alive: the overview's banner (role=alert) says why the queue is
    stalled. Each 3 s poll wrote the reason into it again, and an alert is read out at each write:
    a screen reader repeated "Jobs are waiting and no worker takes them" every 3 s."""
    expect = patient_expect()
    api_submit(idle_stack.url, "top_locations", {"n": 2})  # no worker: it waits
    page.goto(f"{idle_stack.url}/ui/")
    expect(page.locator("#stalled")).to_be_visible()
    expect(page.locator("#stalled-reason")).not_to_be_empty()
    page.evaluate(WATCH_LIVE)
    page.wait_for_timeout(7000)  # two polls or more, the queue as stalled as before
    assert _spoken(page) == []
    assert page.problems == []


def test_a_job_page_says_when_the_api_does_not_answer_and_recovers(page, idle_stack):
    """A waiting job's page whose requests got no answer at all (the API stopped, or the network
    went) retried in silence: it went on showing "submitted" as if live, with nothing saying that
    nothing came back, where the overview and the jobs table said the API could not be reached."""
    expect = patient_expect()
    job_id = api_submit(idle_stack.url, "top_locations", {"n": 4})  # no worker: it stays submitted
    page.route(
        "**/jobs/*",
        lambda route: route.abort("connectionrefused") if route.request.resource_type == "fetch" else route.continue_(),
    )
    page.goto(f"{idle_stack.url}/ui/jobs/{job_id}")
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("The API cannot be reached")
    expect(page.locator("#notice")).to_contain_text("Trying again")

    page.unroute("**/jobs/*")  # the API is back: the page finds the job by itself
    expect(page.locator("#j-status")).to_have_text("submitted")
    expect(page.locator("#notice")).to_be_hidden()
    assert page.problems == []


def test_with_the_api_gone_every_page_says_so_in_words(browser, tmp_path):
    """The API stopped (or the kubectl port-forward to it ended): the pages said the browser's own
    "Connection problem: TypeError: Failed to fetch", the submit form "Could not reach the API:
    TypeError: Failed to fetch", and Cancel on a job's page said nothing at all. Each now says in the
    notice (the one live region) that the API cannot be reached, why that may be, and what happens
    next: the polls try again; a press is to be made again once it is back."""
    expect = patient_expect()
    with running_stack(tmp_path) as s:
        s.start_api(web_concurrency=1)
        job_id = api_submit(s.url, "top_locations", {"n": 3})  # no worker: it stays submitted
        context = new_context(browser, viewport={"width": 1280, "height": 900})
        try:
            pages = {}
            for name, path, ready in [
                ("overview", "/ui/", "#st-alive"),
                ("jobs", "/ui/jobs", "#jobs a"),
                ("job", f"/ui/jobs/{job_id}", "#a-cancel"),
                ("submit", "/ui/submit?operation=top_locations", "#submit-form"),
            ]:
                pages[name] = context.new_page()
                pages[name].goto(s.url + path)
                expect(pages[name].locator(ready).first).to_be_visible()
            pages["submit"].fill("#p-n", "4")
            s.api.signal(signal.SIGQUIT)  # gunicorn's quick shutdown: a graceful one waits out the long polls
            s.api.wait_exit(60)

            for name in ("overview", "jobs", "job"):
                expect(pages[name].locator("#notice")).to_contain_text("The API cannot be reached")
                expect(pages[name].locator("#notice")).to_contain_text("port-forward")
                expect(pages[name].locator("#notice")).to_contain_text("Trying again every few seconds")
            pages["job"].click("#a-cancel")
            expect(pages["job"].locator("#notice")).to_contain_text("Press Cancel again once it is back")
            pages["submit"].click("#submit-form button[type=submit]")
            expect(pages["submit"].locator("#notice")).to_contain_text("The API cannot be reached")
            expect(pages["submit"].locator("#notice")).to_contain_text("press Submit again once the API is back")
            for name, pg in pages.items():
                assert "Failed to fetch" not in pg.locator("body").inner_text(), name
        finally:
            context.close()


def test_with_the_api_gone_the_filter_and_choose_forms_say_so_and_keep_their_values(browser, tmp_path):
    """The Filter (jobs list) and Choose (operation) forms were plain form navigations: with the API
    stopped (the port-forward ended), a pick swapped the page for the browser's own "This site can't
    be reached", and Back brought the page back without the pick. They now say in the notice, in the
    words every other press uses, that the API cannot be reached, and stay on the page with the pick."""
    expect = patient_expect()
    with running_stack(tmp_path) as s:
        s.start_api(web_concurrency=1)
        api_submit(s.url, "top_locations", {"n": 3})
        context = new_context(browser, viewport={"width": 1280, "height": 900})
        try:
            jobs, submit = context.new_page(), context.new_page()
            jobs.goto(f"{s.url}/ui/jobs")
            expect(jobs.locator("#jobs a").first).to_be_visible()
            submit.goto(f"{s.url}/ui/submit?operation=top_locations")
            expect(submit.locator("#submit-form")).to_be_visible()
            s.api.signal(signal.SIGQUIT)
            s.api.wait_exit(60)

            jobs.select_option("#f-status", "failed")  # a pick with the mouse applies at once
            expect(jobs.locator("#notice")).to_contain_text("The API cannot be reached")
            expect(jobs.locator("#notice")).to_contain_text("Press Filter again once it is back")
            jobs.select_option("#f-operation", "daily_counts")
            jobs.click("#filters button[type=submit]")
            submit.focus("#operation")
            submit.keyboard.press("ArrowDown")
            submit.keyboard.press("Enter")  # from the keyboard, Enter applies
            expect(submit.locator("#notice")).to_contain_text("The API cannot be reached")
            expect(submit.locator("#notice")).to_contain_text("Press Choose again once it is back")
            jobs.wait_for_timeout(500)  # no navigation under way
            assert jobs.url == f"{s.url}/ui/jobs" and submit.url == f"{s.url}/ui/submit?operation=top_locations"
            assert [jobs.input_value("#f-status"), jobs.input_value("#f-operation")] == ["failed", "daily_counts"]
            assert submit.input_value("#operation") != "top_locations"
        finally:
            context.close()


def test_without_script_the_filter_and_choose_forms_are_plain_forms(browser, stack):
    """The forms' script only stands in front of them: without script they still send the address."""
    expect = patient_expect()
    context = new_context(browser, java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/jobs")
        page.select_option("#f-status", "failed")
        page.click("#filters button[type=submit]")
        page.wait_for_url(f"{stack.url}/ui/jobs?status=failed&operation=")
        page.goto(f"{stack.url}/ui/submit?operation=top_locations")
        page.select_option("#operation", "daily_counts")
        page.click("#choose button[type=submit]")
        page.wait_for_url(f"{stack.url}/ui/submit?operation=daily_counts")
        expect(page.locator("#submit-form")).to_have_attribute("data-operation", "daily_counts")
    finally:
        context.close()


def test_after_a_submit_that_fails_the_focus_is_back_on_the_button(page, idle_stack):
    """Submit pressed from the keyboard while the API did not answer: the error showed, but the
    button had been disabled while it was focused, which drops the focus to the page's start, so
    the next Tab began again at "Skip to content" and Enter pressed nothing."""
    expect = patient_expect()
    page.route("**/submit", lambda route: route.abort("connectionrefused"))
    page.goto(f"{idle_stack.url}/ui/submit?operation=top_locations")
    page.fill("#p-n", "5")
    page.focus("#submit-form button[type=submit]")
    page.keyboard.press("Enter")
    expect(page.locator("#notice")).to_contain_text("The API cannot be reached")
    assert page.evaluate("() => document.activeElement.matches('#submit-form button[type=submit]')")

    page.unroute("**/submit")
    page.keyboard.press("Enter")  # pressing again from where the focus is sends it
    page.wait_for_url(f"{idle_stack.url}/ui/jobs/*")
    assert page.problems == []


# Holds back the answers to the jobs table's requests for its first page (no cursor) sent while
# window.__slow is set, until the test calls window.__release(); counts those held (__held) and
# those the page has finished handling (__handed: a task queued once the body is read runs after
# the page's own continuations, which draw without waiting for anything else); records each first
# row the table draws with its page line. A fixed hold (2.5 s) and fixed waits left the order to
# the machine's speed: on a loaded one the poll went out late or came back before the press, and
# the test passed without the late answer ever arriving after page 2.
SLOW_FIRST_PAGE = """
const fetchNow = window.fetch;
window.__held = 0;
window.__handed = 0;
const released = new Promise((ok) => { window.__release = ok; });
window.fetch = function (url, init) {
  const slow = window.__slow && /jobs\\?/.test(String(url)) && !/cursor=/.test(String(url));
  if (slow) window.__held += 1;
  return fetchNow.call(this, url, init).then((r) => {
    if (!slow) return r;
    const json = r.json.bind(r);
    r.json = () => json().finally(() => setTimeout(() => { window.__handed += 1; }, 0));
    return released.then(() => r);
  });
};
window.__drawn = [];
document.addEventListener('DOMContentLoaded', () => {
  new MutationObserver(() => {
    const a = document.querySelector('#jobs tr td a');
    window.__drawn.push([document.getElementById('page-info').textContent, a ? a.textContent : '']);
  }).observe(document.getElementById('jobs'), { childList: true });
});
"""


def test_a_slow_answer_for_the_page_left_does_not_replace_the_page_shown(browser, stack):
    """On a slow network the jobs table's 3 s poll of page 1, sent just before "Older →" was pressed
    and answered after page 2, drew page 1's rows under "Page 2 · 25 shown" (and put page 1's
    cursor behind Older, so the next press showed page 2 again as "Page 3")."""
    expect = patient_expect()
    for n in range(1, 28):
        api_submit(stack.url, "top_locations", {"n": n})
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    context.add_init_script(SLOW_FIRST_PAGE)
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/ui/jobs")
        expect(page.locator("#older")).to_be_enabled()
        first_of_page_1 = page.locator("#jobs tr td a").first.text_content()
        page.evaluate("() => { window.__slow = true; }")
        page.wait_for_function("() => window.__held > 0", timeout=FINAL_TIMEOUT)  # a poll of page 1, held
        page.click("#older")
        expect(page.locator("#page-info")).to_contain_text("Page 2 ")
        page.evaluate("() => { window.__slow = false; window.__release(); }")  # page 1's answer, late
        page.wait_for_function("() => window.__handed === window.__held", timeout=FINAL_TIMEOUT)
        drawn = page.evaluate("() => window.__drawn")
        start = next(i for i, (line, _) in enumerate(drawn) if line.startswith("Page 2"))
        assert all(row != first_of_page_1 for _, row in drawn[start:]), drawn
    finally:
        context.close()


def _holding(slow: str) -> str:
    """An init script that holds back the answers to the requests ``slow`` (a script expression of
    ``url`` and ``init``) picks until the test lets them through with ``_let_through``. A fixed
    hold (3 s) left it to the machine's speed whether the test saw the page's "…" line, or pressed
    again, before the answer came: a loaded machine can take longer than that between two steps."""
    return f"""
const fetchNow = window.fetch;
window.__held = [];
window.fetch = function (url, init) {{
  const slow = {slow};
  return fetchNow.call(this, url, init).then((r) => slow ? new Promise((ok) => window.__held.push(() => ok(r))) : r);
}};
"""


def _let_through(page) -> None:
    """Once an answer is held (its request went out and was answered), give the page every one held."""
    page.wait_for_function("() => window.__held.length > 0", timeout=FINAL_TIMEOUT)
    page.evaluate("() => window.__held.splice(0).forEach((go) => go())")


SLOW_SUBMIT = _holding("/submit$/.test(String(url))")


def test_a_slow_submit_says_it_is_under_way(browser, idle_stack):
    """On a slow network the Submit button went grey and nothing else happened until the answer came:
    nothing to read, and nothing for a screen reader to say. The notice (role=status) now says
    "Submitting…" until the answer, and an error then takes its place."""
    expect = patient_expect()
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    context.add_init_script(SLOW_SUBMIT)
    try:
        page = context.new_page()
        page.goto(f"{idle_stack.url}/ui/submit?operation=daily_counts")
        page.fill("#p-start", "2024-02-01")
        page.fill("#p-end", "2024-01-01")  # the API refuses it: end before start
        page.click("#submit-form button[type=submit]")
        expect(page.locator("#notice")).to_have_text("Submitting…")
        _let_through(page)
        expect(page.locator("#p-end-error")).to_contain_text("before")
        expect(page.locator("#notice")).to_be_hidden()
        page.fill("#p-end", "2024-03-01")
        page.click("#submit-form button[type=submit]")
        expect(page.locator("#notice")).to_have_text("Submitting…")
        _let_through(page)
        page.wait_for_url(f"{idle_stack.url}/ui/jobs/*")
    finally:
        context.close()


# Holds back the answers to a job page's presses (DELETE for Cancel and Delete, POST for Submit again)
SLOW_PRESS = _holding("!!init && (init.method === 'DELETE' || init.method === 'POST')")


def test_a_slow_press_on_a_jobs_page_says_it_is_under_way(browser, idle_stack):
    """On a slow network, Cancel, Submit again and Delete on a job's page showed nothing until the
    answer came, seconds later: the press seemed lost (a second press was the natural next step), and
    a screen reader said nothing. The notice now says "Cancelling…", "Submitting…", "Deleting…"
    until the answer, which then takes its place."""
    expect = patient_expect()
    job_id = api_submit(idle_stack.url, "top_locations", {"n": 6})  # no worker: it stays submitted
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    context.add_init_script(SLOW_PRESS)
    try:
        page = context.new_page()
        page.goto(f"{idle_stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#a-cancel")).to_be_visible()
        page.click("#a-cancel")
        expect(page.locator("#notice")).to_have_text("Cancelling…")
        _let_through(page)
        expect(page.locator("#notice")).to_have_text("Cancelled.")
        expect(page.locator("#j-status")).to_have_text("cancelled")

        page.on("dialog", lambda d: d.accept())
        page.click("#a-delete")
        expect(page.locator("#notice")).to_have_text("Deleting…")
        _let_through(page)
        page.wait_for_url(f"{idle_stack.url}/ui/jobs")

        other = api_submit(idle_stack.url, "top_locations", {"n": 7})
        page.goto(f"{idle_stack.url}/ui/jobs/{other}")
        expect(page.locator("#a-again")).to_be_visible()
        page.click("#a-again")
        expect(page.locator("#notice")).to_have_text("Submitting…")
        _let_through(page)
        page.wait_for_url(lambda url: "/ui/jobs/" in url and other not in url)
    finally:
        context.close()


def test_a_second_press_while_the_first_is_out_sends_nothing(browser, idle_stack):
    """On a slow network, Delete pressed again while the first press was out sent a second DELETE,
    whose 404 put "This job does not exist" in the notice over "Deleting…" while the first was on its
    way to succeed; Submit again pressed twice sent two submits. (Cancel hides once the job page sees
    the job cancelled, so it cannot be pressed twice.)"""
    expect = patient_expect()
    job_id = api_submit(idle_stack.url, "top_locations", {"n": 6})  # no worker: it stays submitted
    assert requests.delete(f"{idle_stack.url}/jobs/{job_id}", timeout=10).status_code == 200  # cancelled: final
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    context.add_init_script(SLOW_PRESS)
    try:
        page = context.new_page()
        sent = []
        page.on("request", lambda r: sent.append(r.method) if r.method in ("DELETE", "POST") else None)
        page.on("dialog", lambda d: d.accept())
        page.goto(f"{idle_stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#j-status")).to_have_text("cancelled")
        page.click("#a-again")
        expect(page.locator("#notice")).to_have_text("Submitting…")
        page.click("#a-again")  # the first is still out: its answer is held back until let through
        _let_through(page)
        page.wait_for_url(lambda url: "/ui/jobs/" in url and job_id not in url)
        assert sent == ["POST"], sent

        page.goto(f"{idle_stack.url}/ui/jobs/{job_id}")
        expect(page.locator("#j-status")).to_have_text("cancelled")
        page.click("#a-delete")
        expect(page.locator("#notice")).to_have_text("Deleting…")
        page.click("#a-delete")
        expect(page.locator("#notice")).to_have_text("Deleting…")
        _let_through(page)
        page.wait_for_url(f"{idle_stack.url}/ui/jobs")
        assert sent == ["POST", "DELETE"], sent
    finally:
        context.close()


PROXY_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


def test_a_proxys_error_page_is_said_to_be_the_proxys_not_the_apis(page, idle_stack):
    """Behind an Ingress, with the API's pods down or restarting, the Ingress answers 502/503 with an
    HTML page of its own. The page said only "The API answered 502.", as if the API had refused the
    request. It now says something in front of the API answered, and that the API may be down."""
    expect = patient_expect()

    def proxy(status, reason):
        return lambda route: route.fulfill(
            status=status, content_type="text/html", body=PROXY_PAGE.replace("502 Bad Gateway", f"{status} {reason}")
        )

    page.route("**/queue", proxy(502, "Bad Gateway"))
    page.goto(f"{idle_stack.url}/ui/")
    notice = page.locator("#notice")
    expect(notice).to_have_text(
        "Something in front of the API (a proxy or Ingress) answered 502 Bad Gateway, not the API itself: "
        "the API may be down or restarting. Try again in a moment."
    )
    page.unroute("**/queue")
    expect(notice).to_be_hidden()

    page.route("**/submit", proxy(503, "Service Unavailable"))
    page.goto(f"{idle_stack.url}/ui/submit?operation=top_locations")
    page.fill("#p-n", "5")
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("answered 503 Service Unavailable, not the API itself")
    assert page.problems == []


def test_a_slow_login_says_it_is_under_way(browser, token_stack):
    """On a slow network, Log in showed nothing between the press and the next page (or the refusal):
    the press seemed lost. The notice now says "Logging in…"; a refusal clears it for its own line."""
    expect = patient_expect()
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    context.add_init_script(SLOW_PRESS)
    try:
        page = context.new_page()
        page.goto(f"{token_stack.url}/ui/jobs")
        page.fill("#token", "not-the-token")
        page.click("#login-form button")
        expect(page.locator("#notice")).to_have_text("Logging in…")
        _let_through(page)
        expect(page.locator("#token-error")).to_contain_text("not one this API knows")
        expect(page.locator("#notice")).to_be_hidden()
        page.fill("#token", TOKEN)
        page.click("#login-form button")
        expect(page.locator("#notice")).to_have_text("Logging in…")
        _let_through(page)
        expect(page.locator("#jobs-table")).to_be_visible()
    finally:
        context.close()
