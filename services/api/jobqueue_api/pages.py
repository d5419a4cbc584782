"""What every HTML page the API serves shares: security headers and relative links.

The pages are reached through ``kubectl port-forward`` (the API at ``/``), through an Ingress that
strips a path prefix (the API still sees ``/ui/...`` while the browser is at ``/prefix/ui/...``),
or with ``SCRIPT_NAME`` set (the API knows its prefix). Links built relative to the page's own path
work in all three, so templates use :func:`root` instead of absolute URLs.
"""

from __future__ import annotations

from flask import Response, request

# No inline script or style anywhere, nothing from another origin; images may be blob: (PNG results
# fetched with the page's credentials) or data: (Swagger UI's icons).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def root() -> str:
    """The relative path from the current page back to the API's root: ``./``, ``../``, ..."""
    depth = request.path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def secure_page(response: Response) -> Response:
    """Headers for an HTML page or a page asset: strict CSP, no sniffing, no framing, no caching of
    pages (they show job data), a short cache for the static assets."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    elif request.path.startswith("/ui/static/"):
        response.headers["Cache-Control"] = "no-cache"  # keep, but ask (ETag) before reusing
    return response
