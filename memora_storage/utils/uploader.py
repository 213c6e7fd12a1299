"""Copy local content files to the CDN bucket: the local file is the source, never a fresh render.

The bytes are read once at run time, hashed, and those very bytes are sent, so the SHA-256 the
caller records is the hash of what the CDN now holds (US3-1). A path whose local SHA-256 equals
the one the caller already knows to be on the CDN is skipped: a run with nothing changed sends
nothing. A store that asks to slow down gets back-pressure (`throttle`), not a failure.
"""

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from memora_storage.utils import canonical, throttle
from memora_storage.utils.s3 import CdnBucket, CdnError, CdnErrorKind
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

	def __init__(self, store: ContentStore, bucket: CdnBucket, sustained_s: float = throttle.SUSTAINED_S):
		"""`sustained_s`: how long the store may refuse one path ("slow down") before it fails."""
		self.store = store
		self.bucket = bucket
		self.sustained_s = sustained_s
		self.concurrency: throttle.Aimd | None = None  # the last `upload_many`'s, for reports

	def upload(
		self,
		path: str,
		synced_sha256: str | None = None,
		cache_control: str | None = None,
		look_first: bool = False,
	) -> UploadResult:
		"""Send the current local bytes of `path` unless they are the `synced_sha256` version; raises on failure.

		`cache_control` replaces the bucket's default Cache-Control for this object. `look_first`
		(a path a dead worker may have stored): the object is not sent again when the bucket holds
		it with the same size and SHA-256."""
		data = self.store.read(path)
		digest = canonical.sha256(data)
		if digest == synced_sha256:
			return UploadResult(path, digest, len(data), uploaded=False)
		if (
			look_first
			and (stored := self.bucket.head(path))
			and (stored.size, stored.sha256)
			== (
				len(data),
				digest,
			)
		):
			return UploadResult(path, digest, len(data), uploaded=False)
		self.bucket.put(path, data, cache_control=cache_control)
		return UploadResult(path, digest, len(data), uploaded=True)

	def upload_many(
		self,
		paths: Iterable[str],
		synced: Mapping[str, str] | None = None,
		workers: int | None = None,
		cache_control: Mapping[str, str] | None = None,
		look_first: Collection[str] = (),
		heartbeat: Callable[[], None] | None = None,
		heartbeat_every: float = 10.0,
	) -> list[UploadResult]:
		"""Upload `paths` concurrently; one result per distinct path, in order, a failure never stops the rest.

		`synced` maps a path to the SHA-256 already on the CDN, `cache_control` a path to its
		Cache-Control, `look_first` holds paths to look for in the bucket before sending (`upload`).
		`workers` defaults to the bucket's connection pool size, which is also the most requests that
		can be in flight usefully. `heartbeat` is called in the calling thread every `heartbeat_every`
		seconds while uploads run (the caller renews its claim on the paths: a lease).
		"""
		synced = synced or {}
		cache_control = cache_control or {}
		look_first = set(look_first)
		unique = list(dict.fromkeys(paths))
		workers = workers or self.bucket.config.max_pool_connections

		concurrency = self.concurrency = throttle.Aimd(workers)

		def one(path: str) -> UploadResult:
			refused_since: float | None = None
			attempt = 0
			while True:
				try:
					with concurrency.slot():
						result = self.upload(
							path, synced.get(path), cache_control.get(path), path in look_first
						)
				except CdnError as e:
					if e.kind is not CdnErrorKind.THROTTLED:
						return UploadResult(path, error=e)
					concurrency.refused()
					now = time.monotonic()
					refused_since = refused_since or now
					if now - refused_since >= self.sustained_s:
						return UploadResult(path, error=e)
					attempt += 1
					time.sleep(throttle.pause(attempt))
					continue
				except UPLOAD_ERRORS as e:
					return UploadResult(path, error=e)
				concurrency.accepted()
				return result

		with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdn-upload") as pool:
			futures = [pool.submit(one, path) for path in unique]
			while wait(futures, timeout=heartbeat_every if heartbeat else None).not_done:
				if heartbeat:
					heartbeat()
			return [future.result() for future in futures]
