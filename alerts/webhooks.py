"""Sending one webhook: the Standard Webhooks signature, and a POST that cannot be turned against us.

The receiver's URL is typed by a person, so the request is treated as an attacker's (SSRF):

- the host name is resolved here and every address it resolves to must be public (not private,
  loopback, link-local such as the cloud metadata address, multicast, reserved, unspecified; an
  IPv4 address inside IPv6 is judged as IPv4) unless ``ALERTS_WEBHOOK_ALLOW_PRIVATE``; the
  connection then goes to the address that was checked (the host name is sent as Host and TLS
  SNI, and the certificate is checked against it), so a DNS answer that changes between the check
  and the connection (rebinding) cannot redirect it;
- no redirect is followed (a 3xx is a failure, as the specification says);
- connect and read timeouts bound every attempt; the answer's body is never read (a huge or endless
  answer costs nothing), only its status line and headers;
- errors are described by their kind (``read timeout``), never with the URL (its path may be a
  token) or the answer.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3
from django.conf import settings
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

USER_AGENT = "learning-engine-alerts/1"


class RefusedURL(ValueError):
    """The URL may not receive webhooks (the message says why, without the URL)."""


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str
    retry_after_seconds: int | None = None
    gone: bool = False  # 410: the receiver asks to stop
    sent: bool = False  # delivered without an HTTP status (an e-mail the mail backend accepted)

    @property
    def delivered(self) -> bool:
        return self.sent or (self.status_code is not None and 200 <= self.status_code < 300)


def check_url_shape(url: str) -> None:
    """What can be checked without DNS (the admin form); ``resolve`` checks the addresses when sending."""
    parts = urlsplit(url)
    allowed = {"https", "http"} if settings.ALERTS_WEBHOOK_ALLOW_HTTP else {"https"}
    if parts.scheme not in allowed:
        raise RefusedURL("Webhooks are sent over https only.")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("A webhook URL may not hold a user name or password; authenticate with the signature.")
    if not parts.hostname:
        raise RefusedURL("The URL has no host.")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number in range
    except ValueError:
        raise RefusedURL("The URL's port is not valid.") from None
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.rstrip(".").lower() in {
            "localhost",
            "localhost.localdomain",
        } or parts.hostname.lower().endswith(".localhost"):
            _refuse_unless_allowed("The URL's host is this machine.")
        return
    if not _public(literal):
        _refuse_unless_allowed(f"The URL's address {literal} is not public (private, loopback or link-local).")


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, each checked; RefusedURL if any is not public."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedURL("The host name did not resolve.") from None
    addresses: list[str] = []
    for *_, sockaddr in found:
        address = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone index is no part of the address
        if not _public(ipaddress.ip_address(address)):
            _refuse_unless_allowed(
                f"The host resolves to {address}, which is not public (private, loopback or link-local)."
            )
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise RefusedURL("The host name did not resolve.")
    return addresses


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Python 3.12 judges ::ffff:a.b.c.d by its IPv4 address already; explicit here, whatever the version.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _refuse_unless_allowed(reason: str) -> None:
    if not settings.ALERTS_WEBHOOK_ALLOW_PRIVATE:
        raise RefusedURL(reason + " Set ALERTS_WEBHOOK_ALLOW_PRIVATE to allow it.")


def payload(
    *, event_id: str, event_type: str, created_at: dt.datetime, model_type: str, summary: str, data: Any
) -> bytes:
    """The body: the specification's ``type``, ``timestamp`` and ``data``, compact JSON."""
    document = {
        "type": event_type,
        "timestamp": created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": {"id": event_id, "model_type": model_type or None, "summary": summary, "details": data},
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def signed_headers(*, secret: str, message_id: str, body: bytes, now: dt.datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent at ``now`` (whole seconds, UTC)."""
    timestamp = dt.datetime.fromtimestamp(int(now.timestamp()), tz=dt.UTC)
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=timestamp, data=body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Answer:
    """POST ``body`` to ``url`` under the rules of the module docstring; never raises for the network."""
    try:
        check_url_shape(url)
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        addresses = resolve(host, port)
    except RefusedURL as refused:
        return Answer(None, f"refused: {refused}"[:200])
    # total bounds the whole attempt: a server that trickles its headers a byte at a time still ends.
    timeout = urllib3.Timeout(
        total=settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS,
        connect=settings.ALERTS_WEBHOOK_CONNECT_TIMEOUT_SECONDS,
        read=settings.ALERTS_WEBHOOK_TIMEOUT_SECONDS,
    )
    host_header = (f"[{host}]" if ":" in host else host) + ("" if parts.port is None else f":{parts.port}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = {
        **headers,
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Connection": "close",
    }
    pool: urllib3.HTTPConnectionPool
    if https:
        pool = urllib3.HTTPSConnectionPool(
            addresses[0],
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=settings.ALERTS_WEBHOOK_CA_BUNDLE or None,
            server_hostname=host,
            assert_hostname=host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(addresses[0], port, timeout=timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        status = response.status
        retry_after = _seconds(response.headers.get("Retry-After"))
        response.close()  # the body is never read: a huge or endless answer costs nothing
    except (ConnectTimeoutError, NewConnectionError) as failure:
        # NewConnectionError is a ConnectTimeoutError subclass in urllib3 2: ask for it first.
        kind = "connection refused or unreachable" if isinstance(failure, NewConnectionError) else "connect timeout"
        return Answer(None, kind)
    except (ReadTimeoutError, Urllib3Timeout):
        return Answer(None, "read timeout")
    except SSLError:
        return Answer(None, "TLS error (certificate or handshake)")
    except (ProtocolError, urllib3.exceptions.HTTPError, OSError) as failure:
        return Answer(None, f"connection error ({type(failure).__name__})")
    finally:
        pool.close()
    error = (
        ""
        if 200 <= status < 300
        else f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    )
    return Answer(status, error, retry_after_seconds=retry_after, gone=status == 410)


def _seconds(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None  # an HTTP date is ignored: the backoff applies
    return int(value.strip())


def elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))
