"""The URL resolver (FR-006…FR-008): one settings snapshot and a path's delivery in, its URL out.

A snapshot is taken once per rendered file or API call, so every link in one file points the same
way even if an administrator flips the setting meanwhile (spec edge case "Settings Change Race").
A path goes to the CDN only while the CDN holds its current version (DESIGN.md, "Delivery per
version"): the caller says whether it does, and a path nobody knows about follows the settings.
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

	@property
	def uses_cdn(self) -> bool:
		"""CDN only when it is enabled, has a base URL, and no explicit fallback is in force."""
		return self.enable_cdn and not self.local_fallback_mode and bool(self.cdn_base_url)

	@property
	def base_url(self) -> str:
		"""Where URLs point for paths the CDN holds."""
		return self.cdn_base_url.rstrip("/") if self.uses_cdn else self.local_base_url

	@property
	def local_base_url(self) -> str:
		return self.local_domain.rstrip("/") + LOCAL_URL_PREFIX


def get_content_url(path: str, settings: UrlSettings, on_cdn: bool | None = None) -> str:
	"""`{CDN Base URL}/{path}` or `{Local Domain}/files/memora_content/{path}`, percent-encoded.

	`on_cdn` False (the CDN lacks the path's current version) always gives the local URL; True or
	None (no record of the path) give what the settings say.
	"""
	base = settings.local_base_url if on_cdn is False else settings.base_url
	return f"{base}/{url_path(path)}"
