"""Issue 14 item 10: with named tokens (API_TOKENS), each token sees and changes only its own jobs;
API_TOKEN is the admin token that sees all. Before: any client (any holder of the one token) could
list, read, cancel and delete every job. Without tokens the class default stays: everyone sees all."""

from __future__ import annotations

import pytest

from jobqueue.jobs import JobStore

from .support import make_settings
from tests.support.rate_window import start_counting_with

TOKENS = {"alice": "alice-secret-token", "bob": "bob-secret-token", "admin": "admin-secret-token"}


@pytest.fixture
def owned_app(redis_url):
    from jobqueue_api import create_app

    return create_app(
        make_settings(
            redis_url,
            API_TOKEN=TOKENS["admin"],
            SUBMIT_RATE_LIMIT="3",
            API_TOKENS=f"alice:{TOKENS['alice']},bob:{TOKENS['bob']}",
        ),
        load_data=False,
    )


def _as(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def test_each_named_token_sees_and_changes_only_its_own_jobs(owned_app, jobs):
    client = owned_app.test_client()
    mine = client.post("/submit", json={"operation": "sleep"}, headers=_as("alice")).get_json()["job_id"]
    theirs = client.post("/submit", json={"operation": "sleep"}, headers=_as("bob")).get_json()["job_id"]
    assert JobStore(jobs, 60).get(mine).owner == "alice"  # the document records the owner

    for route in (f"/status/{mine}", f"/jobs/{mine}", f"/jobs/{mine}/result", f"/status/{mine}?wait=5"):
        assert client.get(route, headers=_as("bob")).status_code == 404, route
    assert client.delete(f"/jobs/{mine}", headers=_as("bob")).status_code == 404
    assert client.get(f"/status/{mine}", headers=_as("alice")).get_json()["status"] == "submitted"
    assert client.get(f"/status/{mine}", headers=_as("admin")).status_code == 200

    listed = {
        who: [j["job_id"] for j in client.get("/jobs", headers=_as(who)).get_json()["jobs"]]
        for who in ("alice", "bob", "admin")
    }
    assert listed["alice"] == [mine] and listed["bob"] == [theirs]
    assert set(listed["admin"]) == {mine, theirs}

    assert client.delete(f"/jobs/{mine}", headers=_as("alice")).get_json()["cancelled"] is True
    assert client.delete(f"/jobs/{theirs}", headers=_as("admin")).get_json()["cancelled"] is True
    assert client.get("/jobs", headers={"Authorization": "Bearer nobody"}).status_code == 401


def test_the_admin_sees_whose_each_job_is(owned_app):
    """The owner was recorded but never shown: the admin's listing, status read and web page could
    not tell alice's jobs from bob's. Now the document says `owner` when a named token submitted
    it; the admin's own jobs (and every job without named tokens) have no such key."""
    client = owned_app.test_client()
    ids = {
        who: client.post("/submit", json={"operation": "sleep"}, headers=_as(who)).get_json()["job_id"]
        for who in ("alice", "bob", "admin")
    }
    listed = {j["job_id"]: j.get("owner") for j in client.get("/jobs", headers=_as("admin")).get_json()["jobs"]}
    assert listed == {ids["alice"]: "alice", ids["bob"]: "bob", ids["admin"]: None}
    assert client.get(f"/status/{ids['bob']}", headers=_as("admin")).get_json()["owner"] == "bob"
    assert client.get(f"/jobs/{ids['alice']}", headers=_as("alice")).get_json()["owner"] == "alice"
    assert "owner" not in client.get(f"/status/{ids['admin']}", headers=_as("admin")).get_json()

    page = client.get("/ui/jobs", headers=_as("admin")).get_data(as_text=True)
    assert ">User</th>" in page and "Signed in as admin" in page
    assert "Signed in as bob" in client.get("/ui/", headers=_as("bob")).get_data(as_text=True)
    assert ">User</th>" not in client.get("/ui/jobs", headers=_as("bob")).get_data(as_text=True)  # all his


def test_the_admin_lists_one_users_jobs(owned_app):
    """An instructor with the admin token had no way to list one student's jobs; ?owner=<name> does
    (the web page's User filter). A named token sees only its own whatever it asks; an unknown name
    lists nothing (no roster is given away)."""
    client = owned_app.test_client()
    ids = {
        who: client.post("/submit", json={"operation": "sleep"}, headers=_as(who)).get_json()["job_id"]
        for who in ("alice", "bob", "alice")
    }

    def listed(who, query):
        return [j["job_id"] for j in client.get(f"/jobs{query}", headers=_as(who)).get_json()["jobs"]]

    alice_jobs = [j for j in listed("admin", "") if j != ids["bob"]]
    assert listed("admin", "?owner=alice") == alice_jobs and len(alice_jobs) == 2
    assert listed("admin", "?owner=bob") == [ids["bob"]]
    assert listed("admin", "?owner=mallory") == []
    assert listed("bob", "?owner=alice") == [] and listed("bob", "?owner=bob") == [ids["bob"]]
    assert client.get("/jobs?owner=", headers=_as("admin")).status_code == 400

    admin_page = client.get("/ui/jobs?owner=bob", headers=_as("admin")).get_data(as_text=True)
    assert 'id="f-owner"' in admin_page and '<option value="bob" selected>bob</option>' in admin_page
    assert 'id="f-owner"' not in client.get("/ui/jobs", headers=_as("bob")).get_data(as_text=True)


def test_the_rate_limit_counts_per_token(owned_app):
    client = owned_app.test_client()
    start_counting_with(5)
    for who in ("alice", "bob"):  # same address, separate budgets of 3
        statuses = [client.post("/submit", json={"operation": "sleep"}, headers=_as(who)).status_code for _ in range(4)]
        assert statuses == [202, 202, 202, 429], (who, statuses)


def test_the_web_page_logs_in_with_a_named_token(owned_app):
    client = owned_app.test_client()
    assert client.post("/ui/login", json={"token": TOKENS["bob"]}).status_code == 200
    assert client.post("/ui/login", json={"token": "guess"}).status_code == 401


def test_without_tokens_everyone_sees_everything(client):
    job_id = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    assert client.get(f"/status/{job_id}").status_code == 200
    assert "owner" not in client.get(f"/status/{job_id}").get_json()
    page = client.get("/ui/jobs").get_data(as_text=True)
    assert ">User</th>" not in page and "Signed in as" not in page
    assert [j["job_id"] for j in client.get("/jobs").get_json()["jobs"]] == [job_id]


def test_an_admin_token_read_from_a_file_with_its_newline_still_matches(redis_url):
    """API_TOKEN from `kubectl create secret generic ... --from-file=api-token=token.txt` ends in the
    file's newline; clients send the token without it (a header cannot carry one, and
    `export API_TOKEN=$(... | base64 -d)` drops it), so every request was 401."""
    from jobqueue_api import create_app

    client = create_app(make_settings(redis_url, API_TOKEN="s3cret\n"), load_data=False).test_client()
    assert client.get("/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/jobs").status_code == 401


def test_tokens_one_a_line_as_a_secret_file_holds_them(redis_url):
    """`kubectl create secret generic class-tokens --from-file=api-tokens=tokens.txt` with one
    student a line: the value was one entry (alice's token ran to the end of the file), the API
    started, and every student got 401. A line break separates entries as a comma does."""
    from jobqueue_api import create_app

    lines = "alice:alice-line-token\r\nbob:bob-line-token\ncarol:carol-line-token\n"
    app = create_app(make_settings(redis_url, API_TOKENS=lines), load_data=False)
    client = app.test_client()
    for who in ("alice", "bob", "carol"):
        r = client.post("/submit", json={"operation": "sleep"}, headers={"Authorization": f"Bearer {who}-line-token"})
        assert r.status_code == 202, (who, r.get_json())
        job = client.get(f"/status/{r.get_json()['job_id']}", headers={"Authorization": f"Bearer {who}-line-token"})
        assert job.get_json()["owner"] == who


def test_help_with_named_tokens_only_says_a_token_is_needed(redis_url):
    """With API_TOKENS alone (each student a token, no admin token) /help said "Auth: no token
    needed" and its curl lines carried no header, while every one of them answered 401."""
    from jobqueue_api import create_app

    app = create_app(make_settings(redis_url, API_TOKENS="alice:alice-help-token"), load_data=False)
    client = app.test_client()
    text = client.get("/help").get_data(as_text=True)
    assert "no token needed" not in text and "need 'Authorization: Bearer <token>'" in text, text
    lines = [line for line in text.splitlines() if "/submit" in line and "curl" in line]
    assert lines and all('-H "Authorization: Bearer $JOBQUEUE_TOKEN"' in line for line in lines), lines
    assert client.get("/help", headers={"Accept": "application/json"}).get_json()["auth"] != "no token needed"


def test_a_401_says_what_was_wrong_with_the_token_sent(owned_app):
    """Every refused token got the same 401, so a student could not tell a typo from a header curl
    never sent. class-tokens.txt holds ``name:token`` lines (docs/first-install.md), and the whole
    line pasted as the token was refused like a guess: the 401 now says to send the token alone
    (only to one who sent that user's own token; a guess after ``alice:`` gets no hint)."""
    client = owned_app.test_client()

    def refusal(header: str | None) -> str:
        r = client.get("/jobs", headers={"Authorization": header} if header is not None else {})
        assert r.status_code == 401 and r.get_json()["error"] == "unauthorized", r.get_json()
        message = r.get_json()["message"]
        assert message.startswith("this route needs 'Authorization: Bearer <your token>'"), message
        assert TOKENS["alice"] not in message, message
        return message

    assert refusal(None) == "this route needs 'Authorization: Bearer <your token>'"
    assert "without 'alice:' in front" in refusal(f"Bearer alice:{TOKENS['alice']}")
    assert "without 'alice:' in front" in refusal(f"Bearer alice: {TOKENS['alice']}")
    assert "not one this API knows" in refusal("Bearer alice:guess")
    assert "without" not in refusal(f"Bearer bob:{TOKENS['alice']}")
    assert "not one this API knows" in refusal("Bearer guess")
    assert "scheme 'Token'" in refusal(f"Token {TOKENS['alice']}")
    assert "scheme 'Basic'" in refusal("Basic YWxpY2U6c2VjcmV0")
    assert "no token after 'Bearer'" in refusal("Bearer ")


@pytest.mark.parametrize(
    "header",
    [
        TOKENS["alice"],  # the token alone, no scheme: the commonest slip
        f"Bearer\t{TOKENS['alice']}",  # a tab where the space belongs
        f"alice:{TOKENS['alice']}",  # the tokens file's line, no scheme
        f"alice\t{TOKENS['alice']}",
        f"{TOKENS['alice']} {TOKENS['alice']}",  # the token in the scheme's place
    ],
    ids=["alone", "tab", "line", "line-tab", "twice"],
)
def test_a_401_never_repeats_a_token_sent_in_the_schemes_place(owned_app, header):
    """A header with no 'Bearer ' before the token was answered "the header sent uses the scheme
    '<the whole header>'": the token itself, in a message a CLI prints and CI logs keep, where the
    docs promise the message never shows one. Only a known scheme's name is repeated now."""
    r = owned_app.test_client().get("/jobs", headers={"Authorization": header})
    message = r.get_json()["message"]
    assert r.status_code == 401 and TOKENS["alice"] not in message, message
    assert "scheme" in message, message


def test_the_web_page_login_takes_a_pasted_token_as_the_api_takes_it(owned_app):
    """The login form sent the token as typed: one pasted with a space or a line's end around it was
    "not the API token" while curl's header, which the API strips, worked; and the whole
    class-tokens line was refused without a word of why."""
    client = owned_app.test_client()
    r = client.post("/ui/login", json={"token": f" {TOKENS['alice']}\n"})
    assert r.status_code == 200, r.get_json()
    assert client.get("/jobs").status_code == 200  # the cookie holds the token as the API knows it
    r = client.post("/ui/login", json={"token": f"alice:{TOKENS['alice']}"})
    assert r.status_code == 401 and "without 'alice:' in front" in r.get_json()["message"], r.get_json()
    r = client.post("/ui/login", json={"token": "guess"})
    assert r.status_code == 401 and "not one this API knows" in r.get_json()["message"], r.get_json()


def test_an_unknown_owner_on_the_admins_page_is_a_400_page_saying_so(owned_app):
    """``/ui/jobs?owner=mallory`` showed every user's jobs under "any" without a word; like a
    status that is not one, it is now a 400 page naming the users (the value itself not shown)."""
    client = owned_app.test_client()
    response = client.get("/ui/jobs?owner=mallory", headers=_as("admin"))
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "The user in the address is not a user of this API; the users are alice, bob." in html
    assert "mallory" not in html and '<option value="bob" selected>' not in html
    assert client.get("/ui/jobs?owner=bob", headers=_as("admin")).status_code == 200
    assert client.get("/ui/jobs?owner=alice", headers=_as("bob")).status_code == 200  # no filter of their own


def test_the_queue_overview_shows_a_user_only_their_own_running_job_ids(owned_app, jobs, queue):
    """``GET /queue`` listed what each worker runs by job id, for every user: bob read the ids of
    alice's running jobs there (and the web page's overview linked to them), though one user never
    learns another's job ids. Now another user's job shows as ``job_id: null`` with ``busy: true``;
    its owner and the admin still see the id, and the idle count is unchanged."""
    import time

    from jobqueue import keys
    from jobqueue.cli_queue import info_text

    client = owned_app.test_client()
    hers = client.post("/submit", json={"operation": "sleep"}, headers=_as("alice")).get_json()["job_id"]
    now = time.time()
    queue.zadd(keys.WORKERS_HEARTBEAT, {"w-busy": now, "w-idle": now})
    queue.hset(keys.WORKERS_BUSY, "w-busy", hers)

    def workers(who: str) -> dict[str, dict]:
        doc = client.get("/queue", headers=_as(who)).get_json()
        return {w["id"]: w for w in doc["workers"]}

    for who, shown in (("alice", hers), ("admin", hers), ("bob", None)):
        seen = workers(who)
        assert seen["w-busy"]["job_id"] == shown and seen["w-busy"]["busy"] is True, who
        assert seen["w-idle"]["job_id"] is None and seen["w-idle"]["busy"] is False, who
    as_bob = client.get("/queue", headers=_as("bob"))
    assert hers not in as_bob.get_data(as_text=True)
    text = info_text(as_bob.get_json())
    assert "busy" in text and "idle" in text and hers[:8] not in text
