"""The image tests: both images are built once per session (``built_images``, tests/support/images.py);
every test marked ``images`` skips, with the reason, where they cannot be built."""

from __future__ import annotations

import pytest

from tests.support.images import why_not


def pytest_collection_modifyitems(config, items):
    reason = why_not()
    for item in items:
        if "images" in item.keywords and reason:
            item.add_marker(pytest.mark.skip(reason=reason))
