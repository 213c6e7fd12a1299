"""The CDN health probe: fetch a canary object through the CDN Base URL, as a student's app would.

The S3 API answering says little about what clients reach: the edge can be down, misrouted or
serving errors while uploads work. So the probe GETs a small object with known bytes through the
CDN Base URL and checks the status and the body's SHA-256. The canary's name starts with a dot,
which no content path can (`paths.validate_relpath`), so it never collides with content and
verification leaves it out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import urllib3

from memora_storage.utils import canonical

CANARY_PATH = ".memora-canary.json"
CANARY_BYTES = canonical.dumps({"memora_storage": "canary", "purpose": "CDN health probe; do not delete"})
CANARY_SHA256 = canonical.sha256(CANARY_BYTES)
# Never kept by a cache: a probe must see what the edge and the bucket serve now.
CANARY_CACHE_CONTROL = "no-store"
DEFAULT_TIMEOUT = 5.0  # seconds, connect and read each: a slower edge fails students' apps too

_pool = urllib3.PoolManager(retries=False, num_pools=4)


@dataclass(frozen=True)
class EdgeProbe:
	"""What one fetch of the canary found."""

	ok: bool
	latency_ms: float
	status: int | None = None  # the HTTP status, None when no answer came
	error: str = ""  # a short sentence, empty when ok
	missing: bool = False  # the edge answered 403/404: the canary may simply not be uploaded yet


def canary_url(cdn_base_url: str) -> str:
	return f"{cdn_base_url.rstrip('/')}/{CANARY_PATH}"


def probe(cdn_base_url: str, timeout: float = DEFAULT_TIMEOUT) -> EdgeProbe:
	"""GET the canary through the CDN Base URL; healthy only with a 200 and exactly its bytes."""
	url = canary_url(cdn_base_url)
	started = time.monotonic()
	try:
		response = _pool.request(
			"GET",
			url,
			timeout=urllib3.Timeout(connect=timeout, read=timeout),
			headers={"Cache-Control": "no-cache"},
			preload_content=True,
			redirect=True,
		)
	except urllib3.exceptions.NewConnectionError as e:  # a subclass of the timeout error in urllib3
		return EdgeProbe(False, _ms(started), error=f"{_host(url)} unreachable: {_reason(e)}")
	except urllib3.exceptions.TimeoutError:
		return EdgeProbe(False, _ms(started), error=f"no answer from {_host(url)} within {timeout:g} s")
	except urllib3.exceptions.HTTPError as e:
		return EdgeProbe(False, _ms(started), error=f"{_host(url)} unreachable: {_reason(e)}")
	latency = _ms(started)
	status = response.status
	if status != 200:
		return EdgeProbe(
			False,
			latency,
			status,
			f"the CDN answered HTTP {status} for the canary object",
			missing=status in (403, 404),
		)
	if canonical.sha256(response.data) != CANARY_SHA256:
		return EdgeProbe(
			False, latency, status, f"the CDN served {len(response.data)} bytes that are not the canary's"
		)
	return EdgeProbe(True, latency, status)


def fetch(url: str, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
	"""The body a plain GET of `url` answers with 200 (as a student's app sends it), else None."""
	try:
		response = _pool.request("GET", url, timeout=urllib3.Timeout(connect=timeout, read=timeout))
	except urllib3.exceptions.HTTPError:
		return None
	return response.data if response.status == 200 else None


def _ms(started: float) -> float:
	return round((time.monotonic() - started) * 1000, 1)


def _reason(error: Exception) -> str:
	"""The OS's words for a failed connection (Connection refused), else the error's class name."""
	cause = getattr(error, "reason", None) or error.__context__ or error
	return getattr(cause, "strerror", None) or type(cause).__name__


def _host(url: str) -> str:
	"""Host and port only: a CDN Base URL carries no secrets, but a path is noise in an error line."""
	return urllib3.util.parse_url(url).netloc or url
