"""The URL resolver (FR-006…FR-008): one settings snapshot in, the URL of a content path out.

A snapshot is taken once per rendered file or API call, so every link in one file points the same
way even if an administrator flips the setting meanwhile (spec edge case "Settings Change Race").
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
		if self.uses_cdn:
			return self.cdn_base_url.rstrip("/")
		return self.local_domain.rstrip("/") + LOCAL_URL_PREFIX


def get_content_url(path: str, settings: UrlSettings) -> str:
	"""`{CDN Base URL}/{path}` or `{Local Domain}/files/memora_content/{path}`, percent-encoded."""
	return f"{settings.base_url}/{url_path(path)}"
