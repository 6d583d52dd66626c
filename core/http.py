"""One retry policy for every HTTP API kb-bot calls with httpx.

Retries 429 and 5xx (and transport errors) with jittered exponential backoff, honouring
``Retry-After``; turns 401/403 into :class:`AuthError` naming the setting to fix. Messages name
the service and status, never a header or a token.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from core.errors import AuthError, BadResponse, RateLimited, RemoteError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0


DEFAULT_POLICY = RetryPolicy()


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), if present."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def send(
    send_once: Callable[[], httpx.Response],
    *,
    service: str,
    credentials_setting: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Call ``send_once`` until it gives a non-retryable answer; returns a 2xx/3xx/4xx response."""
    last_error = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            response = send_once()
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last_error = f"{type(exc).__name__}"
            if attempt == policy.attempts:
                raise RemoteError(
                    f"{service} could not be reached after {attempt} attempts ({last_error})"
                ) from None
            sleep(_backoff(policy, attempt))
            continue
        status = response.status_code
        if status in (401, 403):
            raise AuthError(
                f"{service} refused our credentials (HTTP {status}); check {credentials_setting}",
                status=status,
            )
        if status == 429 or status >= 500:
            last_error = f"HTTP {status}"
            if attempt == policy.attempts:
                kind = RateLimited if status == 429 else RemoteError
                raise kind(
                    f"{service} kept answering {last_error} after {attempt} attempts; "
                    "try again later",
                    status=status,
                )
            wait = retry_after_seconds(response)
            sleep(min(policy.max_delay, wait) if wait is not None else _backoff(policy, attempt))
            continue
        return response
    raise RemoteError(f"{service} failed: {last_error}")  # pragma: no cover - loop always returns


def json_body(response: httpx.Response, *, service: str) -> object:
    """The response's JSON, or BadResponse naming the service and status."""
    if response.status_code >= 400:
        raise BadResponse(
            f"{service} answered HTTP {response.status_code} for {response.request.url.path}",
            status=response.status_code,
        )
    try:
        return response.json()
    except ValueError:
        raise BadResponse(
            f"{service} answered with something that is not JSON "
            f"(HTTP {response.status_code}, {response.headers.get('content-type', 'no type')})",
            status=response.status_code,
        ) from None


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
