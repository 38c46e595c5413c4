"""Logging filters: no query string in a log line.

Identifiers travel in query strings: ``?q=<MRN>`` in the admin's case search, ``?search=<external
id>`` in the API. Access logs keep them for as long as logs are kept, outside the PHI controls of
the ``cases`` app. ``StripQueryStrings`` removes the query string from every URL in a record
(runserver's request lines, ``django.request``'s warnings, anything our own loggers write), before
any handler formats it. The production server's access log is configured apart (docs/deployment.md:
gunicorn's ``--access-logformat`` with ``%(U)s``, the path without the query).

``OneLineClientErrors``: a refused request (4xx) is logged as its one line ("Forbidden (Permission
denied): /admin/auth/user/"). Django attaches the traceback of the ``PermissionDenied`` (or
``Http404``, ``SuspiciousOperation``) that became the answer, which tells nothing about a bug and
buried the server log under tracebacks. Server errors (5xx) keep theirs.
"""

from __future__ import annotations

import logging
import re

# A path (or URL) followed by a query string, up to the next blank or quote.
_QUERY = re.compile(r"(?P<path>(?:https?://[^\s\"'?/]+)?/[^\s\"'?]*)\?[^\s\"']*")
REDACTED = "?[query removed]"


def strip_query_strings(text: str) -> str:
    return _QUERY.sub(lambda match: match.group("path") + REDACTED, text)


class StripQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = strip_query_strings(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(strip_query_strings(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                key: strip_query_strings(value) if isinstance(value, str) else value
                for key, value in record.args.items()
            }
        return True


class OneLineClientErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and status < 500 and record.exc_info:
            record.exc_info = None
            record.exc_text = None
        return True
