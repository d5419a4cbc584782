"""The web page in a real browser (Debian's Chromium via Playwright) against the real stack:
redis-server, the API under gunicorn, a worker. Submit through the form and watch the job finish
without a reload, a PNG result, validation errors next to their fields (the page's and the API's),
cancelling a queued job, logging in with the token, an XSS payload staying inert, the page under an
Ingress prefix and under SCRIPT_NAME, and an axe-core scan. Screenshots are saved (browser.py)."""

from __future__ import annotations

import itertools
import json
import re

import pytest
import requests

from devstack.stack import Stack
from tests.ui.browser import (
    FINAL_TIMEOUT,
    OWNERS,
    TOKEN,
    PrefixProxy,
    api_submit,
    axe_source,
    new_context,
    patient_expect,
    screenshot,
)

pytestmark = pytest.mark.slow

XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def _fill_and_submit(page, values: dict):
    for name, value in values.items():
        page.fill(f"#p-{name}", str(value))
    page.click("#submit-form button[type=submit]")


def test_the_data_page_shows_the_loaded_dataset_and_what_the_loader_could_not_read(page, stack):
    """The Data page, with its screenshot for docs/ui.md (the one page of its table it did not show)."""
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/data")
    pairs = page.locator("main dl")
    expect(pairs).to_contain_text("portal-csv")
    expect(pairs).to_contain_text("5,000")
    expect(page.locator("main table")).to_contain_text("coordinates_outside_austin")
    expect(page.locator("time.ts")).not_to_have_text(re.compile(r"^[\d.]+$"))  # the page wrote the time
    screenshot(page, "ui-data")
    assert page.problems == []


def test_submit_through_the_form_and_watch_it_finish_without_reload(page, stack):
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/submit?operation=sleep")
    _fill_and_submit(page, {"seconds": "2"})
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#j-status")).to_have_text(re.compile("submitted|in-progress"), timeout=FINAL_TIMEOUT)
    page.evaluate("window.__still_same_page = true")
    expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    assert page.evaluate("window.__still_same_page") is True  # followed live, no reload
    expect(page.locator("#j-result")).to_contain_text("slept")
    assert page.problems == []


def test_counts_render_as_chart_and_table_with_json_on_demand(page, stack):
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/submit?operation=top_locations")
    _fill_and_submit(page, {"n": "7"})
    expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    assert page.locator("#j-result svg.bars rect.bar").count() == 7
    page.click("#j-result details summary")
    assert page.locator("#j-result table tbody tr").count() == 7
    assert page.locator("#j-json").text_content() == ""  # JSON only when asked for
    page.click("#j-json-box summary")
    expect(page.locator("#j-json")).not_to_be_empty()
    doc = json.loads(page.locator("#j-json").text_content())
    assert len(doc["top_locations"]) == 7
    screenshot(page, "ui-job-counts")
    assert page.problems == []


def test_every_operation_can_be_submitted_watched_and_read_from_the_page(page, stack):
    """The issue's bar: with nothing but the page, submit each operation (its example values typed
    into the generated form), watch it finish, and read the result."""
    expect = patient_expect()
    operations = requests.get(f"{stack.url}/operations", timeout=10).json()["operations"]
    for op in operations:
        page.goto(f"{stack.url}/ui/submit?operation={op['name']}")
        example = op["example"]["params"]
        for p in op["params"]:
            if p["name"] in example and p["type"] != "boolean":
                page.fill(f"#p-{p['name']}", str(example[p["name"]]))
        page.click("#submit-form button[type=submit]")
        page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
        expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
        if op["result"] == "image/png":
            page.wait_for_function("document.getElementById('j-png') && document.getElementById('j-png').complete")
            assert page.evaluate("document.getElementById('j-png').naturalWidth") > 300, op["name"]
        else:
            expect(page.locator("#j-result")).not_to_be_empty()
            for key in op["result_keys"]:
                expect(page.locator("#j-result")).to_contain_text(key)
    assert page.problems == []


def test_png_result_is_shown_inline_and_downloadable(page, stack):
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/submit?operation=plot_top_locations")
    _fill_and_submit(page, {"n": "6"})
    expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    img = page.locator("#j-png")
    expect(img).to_be_visible()
    page.wait_for_function("document.getElementById('j-png').complete")
    assert page.evaluate("document.getElementById('j-png').naturalWidth") > 400
    # a screen reader hears what the chart shows and, in a table under it, its numbers: it heard
    # "Chart drawn by plot_top_locations for n=6" and was sent to run top_locations for the figures
    expect(img).to_have_attribute(
        "alt", re.compile(r"^Bar chart of the top 6 incident locations in Austin.*table below")
    )
    top = requests.get(f"{stack.url}/analysis/top_locations?n=6", timeout=30).json()["top_locations"]
    page.click("#j-result details summary")
    tree = page.locator("#j-result").aria_snapshot()
    assert "group: The chart's numbers" in tree.replace("group:\n  - text: ", "group: ")
    assert 'columnheader "address"' in tree and 'columnheader "incidents"' in tree
    for address, count in top.items():
        assert f'row "{address} {count:,}"' in tree, tree
    # the "incidents" heading stood at the left of its column, the figures at its right edge
    heading, figure = page.locator("#j-result table th").nth(1), page.locator("#j-result table td.num").first
    align = "e => getComputedStyle(e).textAlign"
    assert heading.evaluate(align) == figure.evaluate(align) == "right"
    href = page.locator("#a-download").get_attribute("href")
    with page.expect_download() as download:
        page.click("#a-download")
    assert download.value.suggested_filename.endswith(".png")
    assert href.endswith("/result")
    screenshot(page, "ui-job-png")
    assert page.problems == []


def test_validation_errors_appear_next_to_their_field(page, stack):
    expect = patient_expect()
    before = len(requests.get(f"{stack.url}/jobs?limit=100", timeout=10).json()["jobs"])
    page.goto(f"{stack.url}/ui/submit?operation=top_locations")
    _fill_and_submit(page, {"n": "0"})  # below the registry's minimum: the page refuses it itself
    expect(page.locator("#p-n-error")).not_to_be_empty()
    assert page.locator("#p-n").get_attribute("aria-invalid") == "true"
    assert len(requests.get(f"{stack.url}/jobs?limit=100", timeout=10).json()["jobs"]) == before
    # a rule the page does not know (here: its bound removed) is the API's 400, shown at the field
    page.evaluate("document.getElementById('p-n').removeAttribute('min')")
    _fill_and_submit(page, {"n": "0"})
    expect(page.locator("#p-n-error")).to_contain_text("at least 1")
    screenshot(page, "ui-submit-error")
    assert page.url.endswith("/ui/submit?operation=top_locations")
    # a road over the 100 characters allowed: maxlength cut a paste to 100 and the job searched for
    # that; the page now says how long it is, and queues nothing
    page.goto(f"{stack.url}/ui/submit?operation=incidents_by_road")
    page.fill("#p-road", "N LAMAR BLVD " * 12)  # 156 characters, as a paste of them
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#p-road-error")).to_have_text("At most 100 characters; this has 156.")
    assert page.input_value("#p-road") == "N LAMAR BLVD " * 12
    assert len(requests.get(f"{stack.url}/jobs?limit=100", timeout=10).json()["jobs"]) == before
    assert page.problems == []


def test_a_whole_number_typed_with_an_exponent_is_sent_as_typed(page, stack):
    """A number field accepts 1e2 (and 2000e-1) as the browser's valid 100 (200): the job must be
    stored with that value. The page used to parseInt the text, sending n=1 (n=2000) instead."""
    for typed, sent in (("1e2", 100), ("2000e-1", 200), ("7", 7)):
        page.goto(f"{stack.url}/ui/submit?operation=top_locations")
        _fill_and_submit(page, {"n": typed})
        page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
        job_id = page.url.rsplit("/", 1)[1]
        params = requests.get(f"{stack.url}/jobs/{job_id}", timeout=10).json()["params"]
        assert params == {"n": sent}, (typed, params)
    assert page.problems == []


def test_the_filter_and_operation_lists_work_from_the_keyboard(page, stack):
    """Arrow keys on a closed select change its value (Chromium, Firefox), and the page applied every
    change at once: the first ArrowDown reloaded the page with the next option and the focus was
    lost, so a keyboard user could never get past it (to "failed", or to a plot operation). Now
    arrows move through the list and Enter (or the form's button) applies it; a mouse pick still
    applies at once."""
    for path, select, name in (("/ui/jobs", "#f-status", "status"), ("/ui/submit", "#operation", "operation")):
        page.goto(f"{stack.url}{path}")
        start = page.url
        page.focus(select)
        for _ in range(3):
            page.keyboard.press("ArrowDown")
        page.wait_for_timeout(500)
        assert page.url == start, path  # no reload while moving through the list
        assert page.evaluate("document.activeElement.id") == select[1:]
        wanted = page.eval_on_selector(select, "s => s.options[s.options.length > 3 ? 3 : 0].value")
        assert page.input_value(select) == wanted
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(rf"[?&]{name}={re.escape(wanted)}(&|$)"))
        # a mouse pick applies at once, as before
        page.select_option(select, index=1)
        page.wait_for_url(re.compile(rf"[?&]{name}=(?!{re.escape(wanted)}(&|$))"))
    assert page.problems == []


def test_xss_payload_in_a_parameter_stays_inert(page, stack):
    expect = patient_expect()
    job_id = api_submit(stack.url, "incidents_by_road", {"road": XSS})
    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator("#jobs")).to_contain_text("onerror", timeout=FINAL_TIMEOUT)
    page.goto(f"{stack.url}/ui/jobs/{job_id}")
    expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    expect(page.locator("#j-params")).to_contain_text("<script>window.__xss=2</script>")
    expect(page.locator("#j-result")).to_contain_text('<img src=x onerror="window.__xss=1">')
    page.click("#j-json-box summary")
    expect(page.locator("#j-json")).to_contain_text("onerror")
    # typed into the form too
    page.goto(f"{stack.url}/ui/submit?operation=incidents_by_road")
    _fill_and_submit(page, {"road": XSS})
    expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    assert page.locator("#main img").count() == 0 and page.locator("#main script").count() == 0
    assert page.problems == []


def test_overview_and_jobs_table_update_live(page, stack):
    expect = patient_expect()
    done = api_submit(stack.url, "incidents_by_weekday")
    assert requests.get(f"{stack.url}/jobs/{done}?wait=30", timeout=40).json()["status"] == "complete"
    page.goto(f"{stack.url}/ui/")
    expect(page.locator("#st-alive")).to_have_text("1", timeout=FINAL_TIMEOUT)
    expect(page.locator("#stalled")).to_be_hidden()
    expect(page.locator("#workers")).to_contain_text("yes")
    expect(page.locator("#recent-complete")).not_to_have_text("0", timeout=FINAL_TIMEOUT)
    assert page.locator("#recent-chart svg rect").count() >= 1
    screenshot(page, "ui-overview")
    page.goto(f"{stack.url}/ui/jobs")
    page.evaluate("window.__still_same_page = true")
    job_id = api_submit(stack.url, "incidents_by_hour")
    row = page.locator("#jobs tr", has=page.locator(f'a[href$="{job_id}"]'))
    expect(row).to_contain_text("complete", timeout=FINAL_TIMEOUT)  # appeared and finished, no reload
    assert page.evaluate("window.__still_same_page") is True
    screenshot(page, "ui-jobs")
    page.select_option("#f-operation", "incidents_by_hour")
    page.wait_for_url(re.compile(r"operation=incidents_by_hour"))
    expect(page.locator("#jobs")).to_contain_text("incidents_by_hour")
    assert "top_locations" not in page.locator("#jobs").text_content()
    assert page.problems == []


def test_jobs_table_pages_by_cursor(page, stack):
    expect = patient_expect()
    for _ in range(60):
        api_submit(stack.url, "sleep", {"seconds": 0})
    page.goto(f"{stack.url}/ui/jobs")
    expect(page.locator("#page-info")).to_contain_text("Page 1", timeout=FINAL_TIMEOUT)
    live = page.locator("#live")
    live.uncheck()  # a still page to compare
    first = page.locator("#jobs a").all_text_contents()
    assert len(first) == 25
    page.click("#older")
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    second = page.locator("#jobs a").all_text_contents()
    assert len(second) == 25 and not set(first) & set(second)
    page.click("#newer")
    expect(page.locator("#page-info")).to_contain_text("Page 1")
    assert page.locator("#jobs a").all_text_contents() == first
    assert page.problems == []


def test_cancel_a_queued_job(page, idle_stack):
    expect = patient_expect()
    url = idle_stack.url
    waiting = api_submit(url, "sleep", {"seconds": 0})
    page.goto(f"{url}/ui/")
    expect(page.locator("#stalled")).to_be_visible(timeout=FINAL_TIMEOUT)  # waiting, no worker alive
    expect(page.locator("#stalled-reason")).to_contain_text("no live worker")  # GET /queue's stalled_reason
    page.goto(f"{url}/ui/jobs/{waiting}")
    expect(page.locator("#a-cancel")).to_be_visible(timeout=FINAL_TIMEOUT)
    page.click("#a-cancel")
    expect(page.locator("#j-status")).to_have_text("cancelled", timeout=FINAL_TIMEOUT)
    assert requests.get(f"{url}/jobs/{waiting}", timeout=10).json()["status"] == "cancelled"
    expect(page.locator("#a-delete")).to_be_visible()
    page.remove_listener("dialog", page.dialog_guard)  # the page asks before deleting: say yes
    page.once("dialog", lambda d: d.accept())
    page.click("#a-delete")
    page.wait_for_url(re.compile(r"/ui/jobs$"))
    assert requests.get(f"{url}/jobs/{waiting}", timeout=10).status_code == 404
    assert page.problems == []


KEY = re.compile(r'^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$')


def _jobs_with(url, n):
    jobs = requests.get(f"{url}/jobs?limit=100&operation=top_locations", timeout=10).json()["jobs"]
    return [j["id"] for j in jobs if j["params"].get("n") == n]


def test_pressing_submit_twice_quickly_queues_one_job(page, idle_stack):
    """Two presses before the first answer (the second request sent while the first is held): both
    carry the same Idempotency-Key, the API stores one job, and the page follows it."""
    url, held, keys = idle_stack.url, [], []

    def hold_until_both_sent(route):
        keys.append(route.request.headers.get("idempotency-key"))
        held.append((route, route.fetch()))  # reached the API; its answer is held back
        if len(held) == 2:
            for r, response in held:
                r.fulfill(response=response)

    page.route("**/submit", hold_until_both_sent)
    page.goto(f"{url}/ui/submit?operation=top_locations")
    page.fill("#p-n", "11")
    page.evaluate("() => { const f = document.getElementById('submit-form'); f.requestSubmit(); f.requestSubmit(); }")
    # both answers name the job and both send the page there (the second navigation replaces the first)
    patient_expect()(page).to_have_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    assert len(keys) == 2 and KEY.match(keys[0]) and keys[0] == keys[1], keys
    assert [response.json()["job_id"] for _, response in held] == _jobs_with(url, 11) * 2
    assert page.url.endswith("/ui/jobs/" + _jobs_with(url, 11)[0])
    assert page.problems == []


def test_pressing_again_after_the_answer_was_lost_returns_the_stored_job(page, idle_stack):
    """The API stored the job but the connection broke before the page read the answer: pressing
    the button again sends the same key and gets that job, not a second one. A changed form is a
    new request with a new key."""
    expect = patient_expect()
    url, keys, stored = idle_stack.url, [], []

    def lose_the_first_answer(route):
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            stored.append(route.fetch().json()["job_id"])
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/submit", lose_the_first_answer)
    page.goto(f"{url}/ui/submit?operation=top_locations")
    page.fill("#p-n", "12")
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#notice")).to_contain_text("press Submit again once the API is back")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    assert len(keys) == 2 and KEY.match(keys[0]) and keys[0] == keys[1], keys
    assert _jobs_with(url, 12) == stored and page.url.endswith("/ui/jobs/" + stored[0])
    # a new page (or changed values) is a new submission: a new key, a second job
    page.goto(f"{url}/ui/submit?operation=top_locations")
    page.fill("#p-n", "12")
    page.click("#submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    assert len(keys) == 3 and KEY.match(keys[2]) and keys[2] != keys[0]
    assert len(_jobs_with(url, 12)) == 2
    assert page.problems == []


def test_a_504_tells_the_student_to_press_submit_again_and_that_finds_the_job(page, idle_stack):
    """Redis stored the job but did not answer in time: the API's 504 ``redis_timeout`` tells an API
    client to send the same request with the same Idempotency-Key, and the page showed that text to
    a student who never saw a key. The page says to press Submit again, and pressing it (same key)
    follows the one job stored."""
    expect = patient_expect()
    url, keys, stored = idle_stack.url, [], []

    def time_out_the_first_answer(route):
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            stored.append(route.fetch().json()["job_id"])  # stored, but the answer is the 504 the API gives
            body = {"error": "redis_timeout", "job_id": stored[0], "message": "... with the same Idempotency-Key ..."}
            route.fulfill(status=504, content_type="application/json", body=json.dumps(body))
        else:
            route.continue_()

    page.route("**/submit", time_out_the_first_answer)
    page.goto(f"{url}/ui/submit?operation=top_locations")
    page.fill("#p-n", "13")
    page.click("#submit-form button[type=submit]")
    error = page.locator("#form-error")
    expect(error).to_contain_text("Press Submit again")
    assert "Idempotency-Key" not in error.text_content()
    page.click("#submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    assert len(keys) == 2 and keys[0] == keys[1], keys
    assert _jobs_with(url, 13) == stored and page.url.endswith("/ui/jobs/" + stored[0])
    assert page.problems == []


def test_page_works_under_an_ingress_prefix_and_under_script_name(page, stack):
    expect = patient_expect()
    with PrefixProxy(stack.api_port, "/class/jq") as proxy:
        page.goto(f"{proxy.url}/ui/submit?operation=sleep")
        for href in page.eval_on_selector_all("nav a", "els => els.map(e => e.href)"):
            assert href.startswith(proxy.url + "/"), href
        _fill_and_submit(page, {"seconds": "0"})
        page.wait_for_url(re.compile(r"/class/jq/ui/jobs/[0-9a-f-]{36}$"))
        expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
        page.goto(f"{proxy.url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("atx-jobqueue", timeout=FINAL_TIMEOUT)
        screenshot(page, "docs-swagger-ui")
    # the same page with the prefix known to the app (SCRIPT_NAME), on the same Redis and worker
    other = Stack(stack.workdir.parent / "script-name", stack.redis, env={"SCRIPT_NAME": "/sn"})
    other.workdir.mkdir(parents=True, exist_ok=True)
    try:
        other.start_api(web_concurrency=1, timeout=0.1)
    except TimeoutError:
        pass  # it answers only under /sn (gunicorn refuses other paths): wait there instead
    try:
        other.wait_api(60, path="/sn/healthz")
        base = f"http://127.0.0.1:{other.api_port}/sn"
        page.goto(f"{base}/ui/submit?operation=sleep")
        _fill_and_submit(page, {"seconds": "0"})
        page.wait_for_url(re.compile(r"/sn/ui/jobs/[0-9a-f-]{36}$"))
        expect(page.locator("#j-status")).to_have_text("complete", timeout=FINAL_TIMEOUT)
    finally:
        other.close()
    assert page.problems == []


def test_login_with_the_token(page, token_stack):
    expect = patient_expect()
    url = token_stack.url
    api_submit(url, "sleep", {"seconds": 0}, token=TOKEN)  # waits: this stack has no worker
    page.goto(f"{url}/ui/jobs")
    expect(page.locator("#login-form")).to_be_visible()
    assert page.locator("nav").count() == 0 and page.locator("#jobs-table").count() == 0
    screenshot(page, "ui-login")
    page.fill("#token", "not-the-token")
    page.click("#login-form button")
    expect(page.locator("#token-error")).to_contain_text("not one this API knows", timeout=FINAL_TIMEOUT)
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#jobs-table")).to_be_visible(timeout=FINAL_TIMEOUT)
    cookie = next(c for c in page.context.cookies() if c["name"] == "jobqueue_token")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert TOKEN not in page.evaluate("document.cookie")
    page.goto(f"{url}/ui/")
    expect(page.locator("#stalled")).to_be_visible(timeout=FINAL_TIMEOUT)  # jobs wait, no worker alive
    expect(page.locator("#st-alive")).to_have_text("0")
    screenshot(page, "ui-overview-stalled")
    # state changes from the page carry the CSRF header: submit, then cancel (no worker here)
    page.goto(f"{url}/ui/submit?operation=sleep")
    _fill_and_submit(page, {"seconds": "0"})
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#a-cancel")).to_be_visible(timeout=FINAL_TIMEOUT)
    page.click("#a-cancel")
    expect(page.locator("#j-status")).to_have_text("cancelled", timeout=FINAL_TIMEOUT)
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible(timeout=FINAL_TIMEOUT)
    assert page.problems == []


def test_axe_finds_no_moderate_serious_or_critical_violations(browser, stack, token_stack):
    """axe-core on every page; the scan is injected, so this context alone bypasses the CSP. A plot
    job's page (its image's alt text and the table of its numbers) was not scanned; it is now, with
    its table open, and moderate findings count too (none on any page when this was added)."""
    expect = patient_expect()
    job_id = api_submit(stack.url, "incidents_by_weekday")
    plot_id = api_submit(stack.url, "plot_incidents_within_radius", {"latitude": 30.2672, "longitude": -97.7431})
    context = new_context(browser, bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    source = axe_source()
    targets = [
        (f"{stack.url}/ui/", "#st-alive"),
        (f"{stack.url}/ui/jobs", "#jobs a"),
        (f"{stack.url}/ui/jobs/{job_id}", "#j-result svg"),
        (f"{stack.url}/ui/jobs/{plot_id}", "#j-result details"),
        (f"{stack.url}/ui/submit?operation=incidents_within_radius", "#submit-form"),
        (f"{stack.url}/ui/data", "main dl"),
        (f"{stack.url}/ui/jobs?status=bogus", "[role=alert]"),  # a filter that is not one: said
        (f"{stack.url}/ui/job/{job_id}", "main h1"),  # no such page: the page's own 404
        (f"{stack.url}/ui/login", "main h1"),  # not a page (it takes POST): the page's own 405
        (f"{token_stack.url}/ui/", "#login-form"),
    ]
    report = {}
    try:
        for url, ready in targets:
            page.goto(url)
            expect(page.locator(ready).first).to_be_visible(timeout=FINAL_TIMEOUT)
            # axe skips what is hidden: a plot's table and a job's JSON sit in closed <details>
            page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
            page.wait_for_timeout(300)
            page.add_script_tag(content=source)
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            bad = [
                (v["id"], v["impact"], len(v["nodes"]))
                for v in result["violations"]
                if v["impact"] in ("moderate", "serious", "critical")
            ]
            report[url] = bad
    finally:
        context.close()
    assert all(not bad for bad in report.values()), report


def test_a_malformed_job_id_in_the_address_bar_gets_the_page_saying_so(page, stack):
    """/ui/jobs/<a truncated id> showed the API's raw JSON 400 in the browser."""
    expect = patient_expect()
    page.goto(f"{stack.url}/ui/jobs/3f2b8c4e-1d2a")
    expect(page.locator("#j-status")).to_have_text("not a job id", timeout=FINAL_TIMEOUT)
    expect(page.locator("main")).to_contain_text("UUID4")
    assert page.problems == []


def test_no_page_scrolls_sideways_on_a_phone(browser, stack):
    """At 320 CSS px (WCAG 1.4.10 reflow; a student's phone) the page itself never scrolls sideways:
    a wide table scrolls in its own box. The overview's workers table (a worker id is long) made the
    whole overview 409 px wide."""
    expect = patient_expect()
    job_id = api_submit(stack.url, "incidents_by_weekday")
    context = new_context(browser, viewport={"width": 320, "height": 640})
    page = context.new_page()
    wide = {}
    try:
        for path, ready in [
            ("/ui/", "#workers td >> nth=1"),
            ("/ui/jobs", "#jobs a"),
            (f"/ui/jobs/{job_id}", "#j-result svg"),
            ("/ui/submit?operation=incidents_within_radius", "#submit-form"),
            ("/ui/data", "main dl"),
        ]:
            page.goto(stack.url + path)
            expect(page.locator(ready).first).to_be_visible(timeout=FINAL_TIMEOUT)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 320:
                wide[path] = width
    finally:
        context.close()
    assert wide == {}, wide


def test_the_interactive_docs_do_not_scroll_sideways_on_a_phone(browser, stack):
    """At 320 CSS px (a phone, or 400% zoom: WCAG 1.4.10) an opened operation on /docs made the whole
    page 425 px wide: Swagger UI's responses and parameters tables took their widest word and field.
    docs.css fits them to the width; the request's curl line still scrolls in its own box."""
    expect = patient_expect()
    context = new_context(browser, viewport={"width": 320, "height": 640})
    wide = {}
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_be_visible(timeout=FINAL_TIMEOUT)
        for op_id in ("operations-jobs-submit", "operations-jobs-listJobs"):
            op = page.locator(f"#{op_id}")
            op.locator(".opblock-summary-control").click()
            op.locator(".try-out__btn").click()
            op.locator(".execute").click()
            expect(op.locator(".responses-table .response-col_status").first).to_be_visible(timeout=FINAL_TIMEOUT)
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > 320:
                wide[op_id] = width
    finally:
        context.close()
    assert wide == {}, wide


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_on_the_interactive_docs_finds_nothing_serious(browser, stack, scheme):
    """/docs was not scanned: axe found white on #49cc90 method labels (2.0:1) and the other light
    Swagger UI colours (color-contrast, 49 nodes), its server <select> and, once an operation is
    tried, the body <textarea> and examples <select> with no label (critical), and two <main>
    landmarks. The page's own CSS and script now fix those. It also found one nested-interactive
    (serious) per route: with deep linking on, Swagger UI puts the path's <a href="#/tag/op"> inside
    the summary <button>; docs.js turns deep linking off. On load and after Try it out + Execute
    nothing serious or critical is left, in both colour schemes: with the system set to dark, /docs
    stayed white (the one light page left), and Swagger UI's own dark theme left its headers table,
    "Examples:" label and Cancel below 4.5:1. The Authorize dialog's close button had no name
    (button-name, critical) and its Authorize and Logout buttons were named "Apply credentials" and
    "Remove authorization" (label-content-name-mismatch, serious); closing it left the focus on
    <body>. It is scanned open, and again once authorized, and closing it puts the focus back.
    Moderate findings count too: Swagger UI's headings went from h1 to h3 (heading-order), and its
    title and its server and Authorize bar were in no landmark (region)."""
    expect = patient_expect()
    context = new_context(browser, color_scheme=scheme, bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    source = axe_source()
    found = {}
    try:
        page.goto(f"{stack.url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_be_visible(timeout=FINAL_TIMEOUT)
        ink = page.evaluate("() => getComputedStyle(document.querySelector('.swagger-ui .info .title')).color")
        assert (min(int(c) for c in re.findall(r"\d+", ink)) > 160) == (scheme == "dark"), ink  # light on dark

        def scan(when):
            page.wait_for_timeout(300)
            page.add_script_tag(content=source)
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            found[when] = [
                (v["id"], v["impact"], len(v["nodes"]), v["nodes"][0]["html"][:80])
                for v in result["violations"]
                if v["impact"] in ("moderate", "serious", "critical")
            ]

        scan("on load")
        opener = page.locator(".auth-wrapper .btn.authorize")
        opener.click()
        dialog = page.locator(".modal-ux")
        expect(dialog.get_by_role("dialog", name="Available authorizations")).to_be_visible()
        scan("Authorize dialog")
        dialog.locator("input").fill("some-token")
        dialog.get_by_role("button", name="Authorize", exact=True).click()
        expect(dialog.get_by_role("button", name="Logout", exact=True)).to_be_visible()
        scan("Authorize dialog, authorized")
        dialog.get_by_role("button", name="Close", exact=True).first.click()
        expect(dialog).to_have_count(0)
        expect(opener).to_be_focused()
        page.locator("#operations-jobs-submit .opblock-summary-control").click()
        expect(page.locator("#operations-jobs-submit .try-out__btn")).to_be_visible()
        scan("operation expanded")
        page.locator(".try-out__btn").first.click()
        page.locator(".execute").first.click()
        expect(page.locator(".responses-table .response-col_status").first).to_be_visible(timeout=FINAL_TIMEOUT)
        scan("after Try it out and Execute")
        # what a screen reader is given (Chromium's own accessibility tree: Playwright's aria
        # snapshot reads an h3's level from its tag): the title, the tags a level under it, their
        # operations' parts under those, and a landmark for the bar above them
        tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
        outline = [
            (
                n["role"]["value"],
                n.get("name", {}).get("value", ""),
                *[p["value"]["value"] for p in n.get("properties", []) if p["name"] == "level"],
            )
            for n in tree
            if n.get("role", {}).get("value") in ("heading", "region")
        ]
        assert ("region", "Server and authorization") in outline, outline
        headings = [o for o in outline if o[0] == "heading"]
        assert headings[0][2] == 1 and all(b[2] <= a[2] + 1 for a, b in itertools.pairwise(headings)), headings
        assert ("heading", "jobs Collapse operation", 2) in headings and ("heading", "Responses", 3) in headings
    finally:
        context.close()
    assert all(not bad for bad in found.values()), found
    assert len(found) == 5, found


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_plot_tried_out_on_the_docs_page_has_its_figures_as_its_text(browser, stack, scheme):
    """Try it out on /analysis/plot_top_locations showed the PNG with no alt at all (axe: image-alt,
    critical): a screen reader said "image", or the blob's address. It now reads the sentence and
    figures the PNG carries, and the figures are a table under the image as on the job page (in
    the alt they could not be read by row, and a long chart's were cut at 30): axe finds nothing
    of moderate impact or above in it, in either colour scheme."""
    expect = patient_expect()
    context = new_context(browser, color_scheme=scheme, bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto(f"{stack.url}/docs")
        op = page.locator("#operations-analysis-analysis_plot_top_locations")
        op.locator(".opblock-summary-control").click()
        op.locator(".try-out__btn").click()
        op.locator(".execute").click()
        img = op.locator(".responses-wrapper img")
        expect(img).to_have_attribute(
            "alt", re.compile(r"^Bar chart of the top 10 incident locations"), timeout=FINAL_TIMEOUT
        )
        top = requests.get(f"{stack.url}/analysis/top_locations?n=10", timeout=30).json()["top_locations"]
        address, count = next(iter(top.items()))
        assert f"Figures (address: incidents): {address}: {count:,};" in img.get_attribute("alt")
        op.locator(".plot-numbers summary").click()
        tree = op.locator(".plot-numbers").aria_snapshot()
        assert 'columnheader "address"' in tree and 'columnheader "incidents"' in tree, tree
        for address, count in top.items():
            assert f'row "{address} {count:,}"' in tree, tree
        page.add_script_tag(content=axe_source())
        result = page.evaluate("axe.run(document, {resultTypes: ['violations'], runOnly: ['image-alt']})")
        assert result["violations"] == []
        result = page.evaluate("axe.run('.plot-numbers', {resultTypes: ['violations']})")
        assert [v["id"] for v in result["violations"] if v["impact"] != "minor"] == []
    finally:
        context.close()


def test_two_different_submits_from_the_docs_page_are_two_jobs(browser, stack):
    """Try it out on POST /submit filled the Idempotency-Key field with the document's example key,
    so every submit from /docs carried that one key: the second with another body got 422
    idempotency_key_reused (and, without named tokens, one student's key was everyone's). The
    parameter now has no example: the field starts empty and no key is sent unless one is typed."""
    expect = patient_expect()
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    answers = []
    try:
        page.goto(f"{stack.url}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_be_visible(timeout=FINAL_TIMEOUT)
        op = page.locator("#operations-jobs-submit")
        op.locator(".opblock-summary-control").click()
        op.locator(".try-out__btn").click()
        for date in ("2024-03-09", "2024-03-10"):
            op.locator("textarea.body-param__text").fill(
                json.dumps({"operation": "incident_count_by_date", "params": {"date": date}})
            )
            with page.expect_response(lambda r: r.url.endswith("/submit") and r.request.method == "POST") as sent:
                op.locator(".execute").click()
            response = sent.value
            answers.append((response.status, response.request.headers.get("idempotency-key"), response.json()))
            op.locator(".btn-clear").click()
    finally:
        context.close()
    assert [status for status, _, _ in answers] == [202, 202], answers
    assert [key for _, key, _ in answers] == [None, None], answers
    assert answers[0][2]["job_id"] != answers[1][2]["job_id"]


def _login(browser, url, token):
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.goto(f"{url}/ui/jobs")
    pg.fill("#token", token)
    pg.click("#login-form button")
    patient_expect()(pg.locator("#jobs-table")).to_be_visible(timeout=FINAL_TIMEOUT)
    return context, pg


def test_the_page_honours_job_ownership(browser, owners_stack):
    """Alice submits from the page; Bob's page neither lists nor opens her job; the admin's lists it,
    with alice in its User column and on the job page (the owner was stored but shown nowhere)."""
    expect = patient_expect()
    url = owners_stack.url
    alice_ctx, alice = _login(browser, url, OWNERS["alice"])
    bob_ctx, bob = _login(browser, url, OWNERS["bob"])
    admin_ctx, admin = _login(browser, url, TOKEN)
    try:
        alice.goto(f"{url}/ui/submit?operation=sleep")
        _fill_and_submit(alice, {"seconds": "0"})
        alice.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
        job_id = alice.url.rsplit("/", 1)[1]
        expect(alice.locator("#j-status")).to_have_text("submitted", timeout=FINAL_TIMEOUT)
        alice.goto(f"{url}/ui/jobs")
        expect(alice.locator("#jobs")).to_contain_text(job_id[:8], timeout=FINAL_TIMEOUT)
        admin.goto(f"{url}/ui/jobs")
        expect(admin.locator("#jobs")).to_contain_text(job_id[:8], timeout=FINAL_TIMEOUT)
        # the admin sees whose job it is (the row's User cell, the job page), each page who is signed in
        row = admin.locator("#jobs tr", has_text=job_id[:8])
        assert row.locator("td").nth(1).text_content() == "alice"
        expect(admin.locator("#who")).to_have_text("Signed in as admin (every job)")
        admin.goto(f"{url}/ui/jobs/{job_id}")
        expect(admin.locator("#j-owner")).to_have_text("alice", timeout=FINAL_TIMEOUT)
        expect(alice.locator("#who")).to_have_text("Signed in as alice")
        bob.goto(f"{url}/ui/jobs")
        expect(bob.locator("#page-info")).to_contain_text("Page 1", timeout=FINAL_TIMEOUT)
        assert job_id[:8] not in bob.locator("#jobs").text_content()
        bob.goto(f"{url}/ui/jobs/{job_id}")
        expect(bob.locator("#j-status")).to_have_text("gone", timeout=FINAL_TIMEOUT)
        expect(bob.locator("#a-cancel")).to_be_hidden()
        # Alice can still cancel her own job from her page
        alice.goto(f"{url}/ui/jobs/{job_id}")
        alice.click("#a-cancel")
        expect(alice.locator("#j-status")).to_have_text("cancelled", timeout=FINAL_TIMEOUT)
    finally:
        for ctx in (alice_ctx, bob_ctx, admin_ctx):
            ctx.close()


def test_logged_in_on_the_page_the_docs_try_it_out_submits_as_you(browser, owners_stack):
    """Logged in on /ui/ and following its "API docs" link, Try it out read with the page's cookie but
    every submit was 403 csrf_failed (a change made with the cookie needs the page's X-CSRF-Token,
    which /docs did not have). /docs now carries it for the cookie's holder: the submit is alice's."""
    expect = patient_expect()
    url = owners_stack.url
    context, pg = _login(browser, url, OWNERS["alice"])
    try:
        pg.click("text=API docs")
        expect(pg.locator(".swagger-ui .info .title")).to_be_visible(timeout=FINAL_TIMEOUT)
        op = pg.locator("#operations-jobs-submit")
        op.locator(".opblock-summary-control").click()
        op.locator(".try-out__btn").click()
        with pg.expect_response(lambda r: r.url.endswith("/submit") and r.request.method == "POST") as sent:
            op.locator(".execute").click()
        answer = sent.value
        assert answer.status == 202, answer.text()
        job = requests.get(
            f"{url}/status/{answer.json()['job_id']}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ).json()
        assert job["owner"] == "alice", job
    finally:
        context.close()
    # without the cookie the page has no CSRF value to give away
    assert 'name="csrf-token" content=""' in requests.get(f"{url}/docs", timeout=10).text


def test_a_login_that_ends_mid_form_keeps_what_was_typed(page, token_stack):
    """The page's login ended while a student filled in the Submit form (the browser session ended,
    or the token was changed): Submit got a 401, the page reloaded to the login form, which said
    nothing of why, and after logging in the form was blank again. The login form now says why, and
    the form comes back with what was typed (and not sent: no job was queued by the refused press)."""
    expect = patient_expect()
    url = token_stack.url
    page.goto(f"{url}/ui/submit?operation=top_locations")
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#submit-form")).to_be_visible()
    page.fill("#p-n", "17")
    page.context.clear_cookies()  # the login ends
    page.click("#submit-form button[type=submit]")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#notice")).to_contain_text("login is no longer accepted")
    expect(page.locator("#notice")).to_contain_text("The Submit form you were filling in is kept")
    page.fill("#token", TOKEN)
    page.click("#login-form button")
    expect(page.locator("#submit-form")).to_be_visible()
    assert page.input_value("#p-n") == "17"
    expect(page.locator("#notice")).to_contain_text("it was not sent")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = requests.get(f"{url}/jobs?operation=top_locations", headers=headers, timeout=10).json()["jobs"]
    page.click("#submit-form button[type=submit]")
    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f-]{36}$"))
    after = requests.get(f"{url}/jobs?operation=top_locations", headers=headers, timeout=10).json()["jobs"]
    assert len(after) == len(before) + 1 and after[0]["params"]["n"] == 17
    page.reload()  # once used, the kept form is gone
    page.goto(f"{url}/ui/submit?operation=top_locations")
    assert page.input_value("#p-n") != "17"
    assert page.problems == []
