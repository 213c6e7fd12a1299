"""Copy local content files to the CDN bucket: the local file is the source, never a fresh render.

The bytes are read once at run time, hashed, and those very bytes are sent, so the SHA-256 the
caller records is the hash of what the CDN now holds (US3-1). A path whose local SHA-256 equals
the one the caller already knows to be on the CDN is skipped: a run with nothing changed sends
nothing.
"""

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, CdnError
from memora_storage.utils.store import ContentStore

# What one path can fail with: the CDN (CdnError), the local file (FileOperationError, an OSError,
# e.g. errno ENOENT when the file was deleted meanwhile) or the path itself (InvalidPathError).
UPLOAD_ERRORS = (CdnError, OSError, ValueError)


@dataclass(frozen=True)
class UploadResult:
	"""The outcome for one path: what was sent (or found already synced), or why it failed."""

	path: str
	sha256: str | None = None
	size: int | None = None
	uploaded: bool = False  # False: skipped as already synced, or failed
	error: Exception | None = None

	@property
	def ok(self) -> bool:
		return self.error is None


class Uploader:
	"""Uploads the files of one content store to one bucket."""

	def __init__(self, store: ContentStore, bucket: CdnBucket):
		self.store = store
		self.bucket = bucket

	def upload(
		self, path: str, synced_sha256: str | None = None, cache_control: str | None = None
	) -> UploadResult:
		"""Send the current local bytes of `path` unless they are the `synced_sha256` version; raises on failure.

		`cache_control` replaces the bucket's default Cache-Control for this object."""
		data = self.store.read(path)
		digest = canonical.sha256(data)
		if digest == synced_sha256:
			return UploadResult(path, digest, len(data), uploaded=False)
		self.bucket.put(path, data, cache_control=cache_control)
		return UploadResult(path, digest, len(data), uploaded=True)

	def upload_many(
		self,
		paths: Iterable[str],
		synced: Mapping[str, str] | None = None,
		workers: int | None = None,
		cache_control: Mapping[str, str] | None = None,
	) -> list[UploadResult]:
		"""Upload `paths` concurrently; one result per distinct path, in order, a failure never stops the rest.

		`synced` maps a path to the SHA-256 already on the CDN, `cache_control` a path to its
		Cache-Control. `workers` defaults to the bucket's connection pool size, which is also the most
		requests that can be in flight usefully.
		"""
		synced = synced or {}
		cache_control = cache_control or {}
		unique = list(dict.fromkeys(paths))
		workers = workers or self.bucket.config.max_pool_connections

		def one(path: str) -> UploadResult:
			try:
				return self.upload(path, synced.get(path), cache_control.get(path))
			except UPLOAD_ERRORS as e:
				return UploadResult(path, error=e)

		with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdn-upload") as pool:
			return list(pool.map(one, unique))
