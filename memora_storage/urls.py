"""Where a URL is decided: the CDN for a path only while the CDN holds the path's current version,
this server otherwise, under one settings snapshot, for the API, Jinja and the links inside files.

Reads the delivery hash (`delivery_hash.py`) in one round trip, or none; when Redis has lost it,
the rows and the settings are read from the database instead and a rebuild is asked for.
"""

from memora_storage import content_files, delivery_hash, settings
from memora_storage.delivery_hash import Delivery
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.resolver import UrlSettings, build_url


def lookup(paths: list[str]) -> tuple[UrlSettings | None, list[Delivery | None]]:
	"""The settings snapshot and each path's delivery (None for no row), in one round trip; no
	snapshot while the delivery hash is incomplete."""
	snapshot = delivery_hash.read(paths)
	if snapshot is None:
		return None, []
	return settings.url_settings_of(snapshot.settings, snapshot.failover), snapshot.deliveries


def url_with(path: str, url_settings: UrlSettings, state: Delivery | None) -> str:
	"""The URL of `path` under one snapshot, given its delivery (None: no row, follow the settings)."""
	if state is None:
		return build_url(path, url_settings)
	return build_url(path, url_settings, state.on_cdn, state.sha256)


_NOT_WRITTEN = Delivery(on_cdn=False, sha256=None)


def link_url(path: str, url_settings: UrlSettings, state: Delivery | None) -> str:
	"""The URL a file's link to `path` carries: a child with no row has not been written yet, so it
	is linked locally whatever the settings (the API, by contrast, follows the settings for it)."""
	return url_with(path, url_settings, state or _NOT_WRITTEN)


def url_of(path: str) -> str:
	"""The URL of one content path."""
	return urls_of([path])[path]


def urls_of(paths: list[str]) -> dict[str, str]:
	"""URLs of many paths from one settings snapshot and one Redis round trip (DB reads if Redis lost it)."""
	for path in paths:
		if not isinstance(path, str):
			raise InvalidPathError(f"path must be text, got {type(path).__name__}")
	url_settings, states = lookup(paths)
	if url_settings is None:
		url_settings = settings.url_settings(
			settings.saved_values(), cdn_down=settings.stored_verdict()["down"]
		)
		states = content_files.delivery_states(paths)
	return {path: url_with(path, url_settings, state) for path, state in zip(paths, states, strict=True)}


def states_of(paths: list[str]) -> list[Delivery | None]:
	"""Each path's delivery, for a render or a relink that already holds its settings snapshot."""
	if not paths:
		return []
	url_settings, states = lookup(paths)
	if url_settings is None:
		return content_files.delivery_states(paths)
	return states
