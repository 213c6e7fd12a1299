"""How a URL is built: one settings snapshot and a path's delivery in, its URL out.

A snapshot is taken once per rendered file or API call, so every link in one file points the same
way even if an administrator flips the setting meanwhile. A path goes to the CDN only while the CDN
holds its current version: the caller says whether it does, and a path nobody knows about follows
the settings.
"""

from dataclasses import dataclass

from memora_storage.utils.paths import LOCAL_URL_PREFIX, url_path


@dataclass(frozen=True)
class UrlSettings:
	"""The part of CDN Settings that decides where a URL points."""

	local_domain: str
	enable_cdn: bool = False
	cdn_base_url: str = ""
	local_fallback_mode: bool = False
	cdn_down: bool = False  # the probe's verdict, while automatic failover is on
	version_in_urls: bool = False  # CDN URLs carry `?v=` and the version's first 12 hex digits

	@property
	def uses_cdn(self) -> bool:
		"""CDN only when it is enabled, has a base URL, and neither the administrator's fallback nor
		the probe's is in force."""
		return (
			self.enable_cdn and not self.local_fallback_mode and not self.cdn_down and bool(self.cdn_base_url)
		)

	@property
	def base_url(self) -> str:
		"""Where URLs point for paths the CDN holds."""
		return self.cdn_base_url.rstrip("/") if self.uses_cdn else self.local_base_url

	@property
	def local_base_url(self) -> str:
		return self.local_domain.rstrip("/") + LOCAL_URL_PREFIX


VERSION_DIGITS = 12


def build_url(path: str, settings: UrlSettings, on_cdn: bool | None = None, sha256: str | None = None) -> str:
	"""`{CDN Base URL}/{path}` or `{Local Domain}/files/memora_content/{path}`, percent-encoded.

	`on_cdn` False (the CDN lacks the path's current version) always gives the local URL; True or
	None (no record of the path) give what the settings say. With `version_in_urls`, a CDN URL of a
	known version (`sha256`) ends in `?v=` and its first 12 hex digits.
	"""
	if on_cdn is False or not settings.uses_cdn:
		return f"{settings.local_base_url}/{url_path(path)}"
	url = f"{settings.base_url}/{url_path(path)}"
	if settings.version_in_urls and sha256:
		url += f"?v={sha256[:VERSION_DIGITS]}"
	return url
