"""atx-jobqueue HTTP API: ``create_app`` builds the Flask app, ``jobqueue-api`` serves it with gunicorn.

``create_app`` is imported lazily: ``jobqueue-api`` must set ``PROMETHEUS_MULTIPROC_DIR`` before
anything imports prometheus_client, and importing this package must not do so.
"""


def create_app(*args, **kwargs):
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
