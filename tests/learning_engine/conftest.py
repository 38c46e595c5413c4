"""Fixtures of the learning_engine tests."""

from __future__ import annotations

import io
import logging

import pytest


@pytest.fixture
def captured(request):
    """The output of configured loggers' handlers, as settings.LOGGING set them up: ``captured(name,
    ...)`` sends every stream handler of those loggers to one stream and returns it."""

    def capture(*names: str) -> io.StringIO:
        stream = io.StringIO()
        for name in names:
            logger = logging.getLogger(name) if name != "root" else logging.getLogger()
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                previous = handler.setStream(stream)  # type: ignore[attr-defined]
                request.addfinalizer(lambda handler=handler, previous=previous: handler.setStream(previous))
        return stream

    return capture
