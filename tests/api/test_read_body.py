"""read_body on gunicorn's own request stream: a body already held with the headers is read without
the deadline timer; one still to come from the socket is timed (the 408 of test_many_clients)."""

from __future__ import annotations

import json

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from werkzeug.wrappers import Request

from jobqueue_api import submission

BODY = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode()
HEAD = (
    b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)


def _requests(chunks):
    """Werkzeug requests over what gunicorn's parser makes of ``chunks`` as they come off a socket."""
    for message in RequestParser(Config(), iter(chunks), ("127.0.0.1", 5000)):
        environ = {
            "REQUEST_METHOD": message.method,
            "CONTENT_LENGTH": str(len(BODY)),
            "CONTENT_TYPE": "application/json",
            "wsgi.input": message.body,
        }
        yield Request(environ)


@pytest.fixture
def timers(monkeypatch):
    started = []
    real = submission.deadline

    def counting(seconds):
        started.append(seconds)
        return real(seconds)

    monkeypatch.setattr(submission, "deadline", counting)
    return started


@pytest.mark.parametrize(
    "chunks, timed",
    [
        ([HEAD + BODY], [0]),  # the usual submit: one segment
        ([HEAD + BODY + HEAD + BODY], [0, 0]),  # pipelined: the next request held too, read after
        ([HEAD, BODY], [1]),  # the body still on the socket
        ([HEAD + BODY[:10], BODY[10:]], [1]),  # part of it
    ],
)
def test_a_body_held_with_the_headers_is_read_without_a_timer(timers, chunks, timed):
    seen = []
    for request in _requests(chunks):
        assert submission.read_body(request, 10_000, 5.0) == BODY
        seen.append(len(timers))
    assert seen == timed
