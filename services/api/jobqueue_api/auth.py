"""Optional bearer token (``API_TOKEN``) for the job and analysis routes.

Off by default: on a class cluster the API is reached through ``kubectl port-forward`` and only
its user can connect. Set ``API_TOKEN`` when an Ingress or NodePort exposes it; health, metrics and
the documentation routes stay open so probes and Prometheus need no secret.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, request

from .errors import ApiError
from .state import current


def protect(blueprint: Blueprint) -> None:
    @blueprint.before_request
    def _check_token() -> None:
        token = current().settings.api_token
        if not token:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            err = ApiError(401, "unauthorized", "this route needs 'Authorization: Bearer <API_TOKEN>'")
            err.headers["WWW-Authenticate"] = 'Bearer realm="atx-jobqueue"'
            raise err
