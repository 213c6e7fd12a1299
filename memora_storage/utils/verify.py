"""Compare the local content files with the CDN bucket (SC-003, US3-2 in docs/requirements.md).

One paginated listing of the bucket gives every object's size and ETag; local files are hashed by
streaming, on a thread pool while the listing is still arriving. The walk covers the public content
root only, so the store's backups and temp files (under its private root) are never listed; only
`.prev` and temp files that writers from before it left in public are skipped by name. Anything else on
either side is reported.
"""

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from memora_storage.utils.edge_probe import CANARY_PATH
from memora_storage.utils.paths import TEMP_PREFIX, file_path, is_content_file
from memora_storage.utils.s3 import CdnBucket, ListedObject

CHUNK = 1 << 20
HASH_WORKERS = 4


@dataclass(frozen=True)
class Mismatch:
	"""A path on both sides whose bytes differ: sizes, or local MD5 against the object's ETag."""

	path: str
	local_size: int
	remote_size: int
	remote_etag: str


@dataclass
class VerifyReport:
	"""Where the CDN differs from the local files; `clean` when it differs nowhere."""

	prefix: str
	local_count: int = 0
	remote_count: int = 0
	matched: int = 0
	missing: list[str] = field(default_factory=list)  # local file, no object on the CDN
	extra: list[str] = field(default_factory=list)  # object on the CDN, no local file: an inconsistency
	mismatched: list[Mismatch] = field(default_factory=list)

	@property
	def clean(self) -> bool:
		return not (self.missing or self.extra or self.mismatched)


def local_files(root: str | os.PathLike, prefix: str = "") -> dict[str, int]:
	"""Content path → size of every content file under `root` (or its folder `prefix`)."""
	root = Path(root)
	top = file_path(root, prefix) if prefix else root
	found: dict[str, int] = {}
	for folder, dirs, files in os.walk(top):
		dirs[:] = [name for name in dirs if not name.startswith(TEMP_PREFIX)]
		relative = Path(folder).relative_to(root).as_posix()
		base = "" if relative == "." else relative + "/"
		for name in files:
			if is_content_file(name):
				try:
					found[base + name] = os.stat(os.path.join(folder, name)).st_size
				except FileNotFoundError:
					continue  # deleted while we walked
	return found


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
	"""Hex digest of a file, read in chunks so memory stays flat whatever its size."""
	digest = hashlib.new(algorithm, usedforsecurity=False)
	with open(path, "rb") as f:
		while chunk := f.read(CHUNK):
			digest.update(chunk)
	return digest.hexdigest()


def verify(root: str | os.PathLike, bucket: CdnBucket, prefix: str = "") -> VerifyReport:
	"""Compare the content files under `root` with the objects of `bucket`, optionally in folder `prefix`.

	Raises CdnError when the bucket cannot be listed: a partial comparison would report false gaps.
	"""
	root = Path(root)
	unseen = local_files(root, prefix)
	report = VerifyReport(prefix=prefix, local_count=len(unseen))
	# With an MD5 ETag the listing alone proves the bytes; otherwise each object's SHA-256 metadata is read.
	by_etag = bucket.config.etag_is_md5 is not False
	algorithm = "md5" if by_etag else "sha256"
	with ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="cdn-verify") as pool:
		hashes = {path: pool.submit(_digest_or_none, root / path, algorithm) for path in unseen}
		same_size: list[ListedObject] = []
		for item in bucket.list(prefix):
			if item.path == CANARY_PATH:
				continue  # the health probe's object, not content
			report.remote_count += 1
			size = unseen.pop(item.path, None)
			if size is None:
				report.extra.append(item.path)
			elif size != item.size:
				report.mismatched.append(Mismatch(item.path, size, item.size, item.etag))
			else:
				same_size.append(item)
		if not by_etag:
			stored = {item.path: pool.submit(bucket.head, item.path) for item in same_size}
		for item in same_size:
			remote = item.etag if by_etag else _sha256_of(stored[item.path])
			local_hash = hashes[item.path].result()
			if local_hash is not None and local_hash == remote:
				report.matched += 1
			else:
				report.mismatched.append(Mismatch(item.path, item.size, item.size, item.etag))
	report.missing = sorted(unseen)
	report.extra.sort()
	report.mismatched.sort(key=lambda mismatch: mismatch.path)
	return report


def _digest_or_none(path: Path, algorithm: str) -> str | None:
	"""None for a file deleted since the walk: it then counts as differing, not as a crash."""
	try:
		return file_digest(path, algorithm)
	except FileNotFoundError:
		return None


def _sha256_of(future: Future) -> str | None:
	stored = future.result()
	return stored.sha256 if stored else None
