"""Edge caches: how long a response may be kept (from its Cache-Control), and purging URLs from them.

A student reads the CDN's edge, not the bucket: after an upload the edge may serve the copy it
fetched before for the old version's lifetime. Purging by URL tells it to forget that copy; each
provider's API is called in batches within its limits, each batch retried, and a purge counts as
confirmed only when every batch was acknowledged (CloudFront: once the invalidation is Completed).
Whoever asked falls back to waiting the lifetime out (the hold) when it is not.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

NONE = "None"
VARNISH = "HTTP PURGE (Varnish)"
CLOUDFRONT = "CloudFront"
CLOUDFLARE = "Cloudflare"
FASTLY = "Fastly"
BUNNY = "Bunny"
PROVIDERS = (NONE, VARNISH, CLOUDFRONT, CLOUDFLARE, FASTLY, BUNNY)

# URLs per request: Cloudflare takes 30 per call on every plan; CloudFront 3,000 paths in progress
# per distribution (1,000 per batch leaves room for a second drain); the others purge one URL a call.
BATCH = {CLOUDFLARE: 30, CLOUDFRONT: 1000}
TRIES = 3
RETRY_DELAY_S = 0.5
TIMEOUT_S = 10.0
CLOUDFRONT_WAIT_S = 60.0  # an invalidation not Completed by then is not confirmed: the hold covers it

_DIRECTIVE = re.compile(r"\s*([a-z-]+)\s*(?:=\s*\"?(\d+)\"?)?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Lifetimes:
	"""How long a response may be reused, in seconds: by a shared cache (an edge), by a browser."""

	edge: int
	browser: int

	@property
	def longest(self) -> int:
		return max(self.edge, self.browser)


def lifetimes(cache_control: str) -> Lifetimes:
	"""RFC 9111: `s-maxage` overrides `max-age` for shared caches; `no-store` lets nobody keep it,
	`private` no shared cache. `no-cache` still lets a cache keep a copy it revalidates: the
	revalidation finds the new version, so it is not held either."""
	directives = {}
	for part in (cache_control or "").split(","):
		if match := _DIRECTIVE.fullmatch(part):
			directives[match.group(1).lower()] = int(match.group(2)) if match.group(2) else None
	if "no-store" in directives or "no-cache" in directives:
		return Lifetimes(0, 0)
	browser = directives.get("max-age") or 0
	edge = 0 if "private" in directives else directives.get("s-maxage", browser) or 0
	return Lifetimes(edge, browser)


@dataclass(frozen=True)
class PurgeConfig:
	"""CDN Settings' purge fields; `endpoint` replaces the provider's API URL (a test, a private edge)."""

	provider: str
	zone: str = ""  # CloudFront distribution id, Cloudflare zone id
	token: str = ""  # Cloudflare API token, Fastly API key, Bunny access key
	endpoint: str = ""
	access_key: str = ""  # CloudFront: the bucket's keys
	secret_key: str = ""
	region: str = "us-east-1"

	@property
	def enabled(self) -> bool:
		return self.provider not in ("", NONE)


@dataclass(frozen=True)
class PurgeResult:
	ok: bool
	requests: int = 0  # calls made, retries included
	error: str = ""


class PurgeError(Exception):
	pass


def purge(
	config: PurgeConfig, urls: Sequence[str], sleep: Callable[[float], None] = time.sleep
) -> PurgeResult:
	"""Purge these URLs from the edge, batch after batch; ok only when every batch was confirmed."""
	urls = list(dict.fromkeys(urls))
	if not config.enabled or not urls:
		return PurgeResult(True)
	send = _SENDERS[config.provider]
	size = BATCH.get(config.provider, 1)
	calls = 0
	with requests.Session() as session:
		for start in range(0, len(urls), size):
			batch = urls[start : start + size]
			for attempt in range(1, TRIES + 1):
				calls += 1
				try:
					send(config, batch, session)
					break
				except (PurgeError, requests.RequestException) as e:
					if attempt == TRIES:
						return PurgeResult(False, calls, f"{config.provider}: {e}"[:500])
					sleep(RETRY_DELAY_S * attempt)
	return PurgeResult(True, calls)


def _check(response: requests.Response, what: str) -> None:
	if not 200 <= response.status_code < 300:
		raise PurgeError(f"{what} answered HTTP {response.status_code}: {response.text[:200]}")


def _varnish(config: PurgeConfig, urls: list[str], session: requests.Session) -> None:
	"""`PURGE <url>` to the edge (or to `endpoint`, with the URL's host in the Host header)."""
	for url in urls:
		target, headers = url, {}
		if config.endpoint:
			parts = urlsplit(url)
			target = config.endpoint.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
			headers["Host"] = parts.netloc
		_check(session.request("PURGE", target, headers=headers, timeout=TIMEOUT_S), "the edge")


def _fastly(config: PurgeConfig, urls: list[str], session: requests.Session) -> None:
	"""Fastly's purge by URL: the PURGE method on the URL itself, with the API key."""
	for url in urls:
		response = session.request("PURGE", url, headers={"Fastly-Key": config.token}, timeout=TIMEOUT_S)
		_check(response, "Fastly")


def _bunny(config: PurgeConfig, urls: list[str], session: requests.Session) -> None:
	api = (config.endpoint or "https://api.bunny.net").rstrip("/") + "/purge"
	for url in urls:
		response = session.post(
			api, params={"url": url}, headers={"AccessKey": config.token}, timeout=TIMEOUT_S
		)
		_check(response, "Bunny")


def _cloudflare(config: PurgeConfig, urls: list[str], session: requests.Session) -> None:
	api = (config.endpoint or "https://api.cloudflare.com/client/v4").rstrip("/")
	response = session.post(
		f"{api}/zones/{config.zone}/purge_cache",
		json={"files": urls},
		headers={"Authorization": f"Bearer {config.token}"},
		timeout=TIMEOUT_S,
	)
	_check(response, "Cloudflare")
	if not response.json().get("success"):
		raise PurgeError(f"Cloudflare refused the purge: {response.text[:200]}")


def _cloudfront(config: PurgeConfig, urls: list[str], _session: requests.Session) -> None:
	"""One invalidation per batch, confirmed once CloudFront reports it Completed."""
	import boto3
	import botocore.exceptions

	client = boto3.session.Session().client(
		"cloudfront",
		endpoint_url=config.endpoint or None,
		region_name=config.region or "us-east-1",
		aws_access_key_id=config.access_key or None,
		aws_secret_access_key=config.secret_key or None,
	)
	paths = [urlsplit(url).path + (f"?{urlsplit(url).query}" if urlsplit(url).query else "") for url in urls]
	try:
		created = client.create_invalidation(
			DistributionId=config.zone,
			InvalidationBatch={
				"Paths": {"Quantity": len(paths), "Items": paths},
				"CallerReference": uuid.uuid4().hex,
			},
		)
		invalidation = created["Invalidation"]
		deadline = time.monotonic() + CLOUDFRONT_WAIT_S
		while invalidation["Status"].lower() != "completed":
			if time.monotonic() > deadline:
				raise PurgeError(
					f"invalidation {invalidation['Id']} not completed within {CLOUDFRONT_WAIT_S:g} s"
				)
			time.sleep(1.0)
			invalidation = client.get_invalidation(DistributionId=config.zone, Id=invalidation["Id"])[
				"Invalidation"
			]
	except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
		raise PurgeError(str(e)) from e


_SENDERS = {
	VARNISH: _varnish,
	FASTLY: _fastly,
	BUNNY: _bunny,
	CLOUDFLARE: _cloudflare,
	CLOUDFRONT: _cloudfront,
}
