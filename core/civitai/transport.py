"""HTTP plumbing shared by the Civitai client and the downloader (stdlib ``urllib`` only).

Redirects are never followed automatically: urllib would forward the ``Authorization`` header
to whatever host a redirect names, and the downloader wants to see the signed storage URL
once so that resumes go straight to it.
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import logging
import random
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

# Civitai answers browsers with HTML login redirects instead of JSON errors; say who we are.
USER_AGENT = "diffusers-presets/1.0 (ComfyUI custom nodes; +https://github.com/diffusers-presets)"
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
T = TypeVar("T")


@dataclass
class Backoff:
    """Capped exponential backoff with jitter. Module-level :data:`BACKOFF` is what runs;
    tests shrink it."""

    attempts: int = 5
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        return min(self.base * 2**attempt, self.cap) * random.uniform(0.8, 1.2)


BACKOFF = Backoff()


class HttpStatusError(Exception):
    """A response with status >= 400 (body truncated, decoded leniently)."""

    def __init__(self, status: int, body: str, headers: http.client.HTTPMessage, host: str) -> None:
        super().__init__(f"HTTP {status} from {host}")
        self.status = status
        self.body = body
        self.headers = headers
        self.host = host

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    def retry_after(self) -> Optional[float]:
        value = self.headers.get("Retry-After") if self.headers else None
        if not value:
            return None
        if value.strip().isdigit():
            return float(value)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class TransportError(Exception):
    """The connection was cut, reset or stalled: worth a retry."""

    retryable = True


class CannotConnect(TransportError):
    """No connection could be made at all: the host name does not resolve, or nothing listens.
    That is what being offline looks like, and waiting does not change it: never retried."""

    retryable = False

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot connect to {host}: {reason}")
        self.host = host
        self.reason = reason


# Connect-time failures that mean "offline" (or a wrong host), not a passing fault.
_NO_ROUTE = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, D401
        return None  # urllib then raises HTTPError carrying the 3xx, which open_url returns


_OPENER = urllib.request.build_opener(_NoRedirect)
# OSError covers URLError, socket timeouts and connection resets.
TRANSPORT_ERRORS = (http.client.HTTPException, OSError)


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


def open_url(url: str, headers: dict[str, str], timeout: float) -> http.client.HTTPResponse:
    """GET ``url``; returns 2xx and 3xx responses, raises :class:`HttpStatusError` for >= 400 and
    :class:`TransportError` when no answer came. ``timeout`` also bounds every read (stall)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    try:
        return _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in REDIRECT_STATUSES:
            return exc  # type: ignore[return-value]  # an HTTPError is a usable response
        try:
            body = exc.read(4096).decode("utf-8", "replace")
        except TRANSPORT_ERRORS:
            body = ""
        finally:
            exc.close()
        raise HttpStatusError(exc.code, body, exc.headers, host_of(url)) from None
    except TRANSPORT_ERRORS as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, socket.gaierror):
            raise CannotConnect(host_of(url), "the host name does not resolve (no network, or a wrong host)") from None
        if isinstance(reason, OSError) and reason.errno in _NO_ROUTE:
            raise CannotConnect(host_of(url), f"{reason.strerror or reason} (no network, or the server is down)") from None
        raise TransportError(f"{type(exc).__name__}: {exc}") from None


def with_retries(call: Callable[[], T], what: str) -> T:
    """Run ``call``, retrying cuts, resets, timeouts, 429 and 5xx with :data:`BACKOFF`. A host
    that cannot be reached at all (:class:`CannotConnect`) and the last failure propagate
    unchanged."""
    attempt = 0
    while True:
        try:
            return call()
        except (TransportError, HttpStatusError) as exc:
            if not exc.retryable or attempt + 1 >= BACKOFF.attempts:
                raise
            retry_after = exc.retry_after() if isinstance(exc, HttpStatusError) else None
            delay = BACKOFF.delay(attempt, retry_after)
            attempt += 1
            log.warning("%s: %s; retrying in %.1f s (%d/%d)", what, exc, delay, attempt, BACKOFF.attempts - 1)
            time.sleep(delay)
