"""Requests the API's HTTP server (gunicorn) refuses before the application sees them, sent over a
bare socket: what the dashboard's refusals panel and ``jobqueue_http_refused_total`` count."""

from __future__ import annotations

from .rawhttp import exchange

# a request line over gunicorn's 4,094 bytes: 414 uri_too_long
TOO_LONG = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def send_refused(base_url: str, request: bytes = TOO_LONG) -> int:
    """Send ``request`` as is to the API at ``base_url``; the status of its answer."""
    return exchange(base_url, request)[0]
