"""Path rules for the content store: what a content path may be, and how it maps to disk and URL.

Every path that reaches the disk or a URL goes through `validate_relpath`, so nothing can escape
the content root whatever a document name or an API caller sends.
"""

import functools
import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import quote

# Where the files live inside a site: `/files/...` is served from `public/files/...` by nginx,
# `bench serve` and Frappe Cloud alike, so the local URL below resolves everywhere.
CONTENT_DIR = "memora_content"
SITE_RELATIVE_ROOT = ("public", "files", CONTENT_DIR)
LOCAL_URL_PREFIX = f"/files/{CONTENT_DIR}"
# What must never be served (`.prev` backups, files being written) lives in `sites/SITE/private/`, on the
# same filesystem so keeping a backup stays a hard link and a write stays one rename. Not under
# `private/files`, which Frappe serves to whoever may read the File document.
SITE_RELATIVE_PRIVATE_ROOT = ("private", CONTENT_DIR)
PREV_DIR = "prev"  # {private root}/prev/{content path}.prev
TEMP_DIR = "tmp"  # {private root}/tmp/{random}.tmp

PREV_SUFFIX = ".prev"
# Files named `.NAME.XXXXXXXX.tmp` are what writers before the private root left in the public tree.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"

# ext4, xfs and most network filesystems cap a file name at 255 bytes; the backup adds `.prev`, so a name
# must leave room for it or it validates but can never be kept. Temp names do not derive from the name.
MAX_SEGMENT_BYTES = 255
MAX_NAME_BYTES = MAX_SEGMENT_BYTES - len(PREV_SUFFIX)
MAX_PATH_CHARS = 1000


# A strict subset of what validate_relpath accepts, checked in one regex call (its per-character loop
# is most of the CPU of a 100k-record scan): parts of word characters, spaces, dots and dashes, not
# starting with a dot or space, at most 50 characters (200 UTF-8 bytes) each, at most 15 parts (765
# characters), and not a backup's or temporary file's name. Any other path goes through the rules.
_PLAIN_SEGMENT = re.compile(r"[\w-][\w .-]{0,49}")
_PLAIN_PATH = re.compile(r"(?:[\w-][\w .-]{0,49}/){0,14}[\w-][\w .-]{0,49}")


def is_plain_path(path: str) -> bool:
	"""True for a path `validate_relpath` accepts and that its fast check can tell at once."""
	return bool(_PLAIN_PATH.fullmatch(path)) and not path.endswith((PREV_SUFFIX, TEMP_SUFFIX))


class InvalidPathError(ValueError):
	"""A name or path that could escape the content root, or that no file could carry."""


def validate_segment(segment: str, what: str = "name") -> str:
	"""Return `segment` if it is safe as one path component, else raise InvalidPathError."""
	if not isinstance(segment, str):
		raise InvalidPathError(f"{what} must be text, got {type(segment).__name__}")
	if not segment or not segment.strip():
		raise InvalidPathError(f"{what} is empty")
	if segment in (".", ".."):
		raise InvalidPathError(f"{what} {segment!r} is not allowed: it would leave its folder")
	for char in segment:
		if char in "/\\":
			raise InvalidPathError(f"{what} {segment!r} contains a path separator {char!r}")
		if char == "\0" or unicodedata.category(char) == "Cc":
			raise InvalidPathError(f"{what} {segment!r} contains a control character U+{ord(char):04X}")
	if segment.startswith(TEMP_PREFIX):
		raise InvalidPathError(f"{what} {segment!r} starts with '.', which is reserved for temporary files")
	if len(segment.encode("utf-8")) > MAX_NAME_BYTES:
		raise InvalidPathError(
			f"{what} is longer than {MAX_NAME_BYTES} bytes (files allow {MAX_SEGMENT_BYTES}, "
			f"less room for the '.prev' copy): {segment[:40]!r}…"
		)
	return segment


def validate_relpath(path: str) -> str:
	"""Return a content path ('plans/P1/manifest.json') if every part of it is safe, else raise."""
	if not isinstance(path, str):
		raise InvalidPathError(f"path must be text, got {type(path).__name__}")
	if not path:
		raise InvalidPathError("path is empty")
	if len(path) > MAX_PATH_CHARS:
		raise InvalidPathError(f"path is longer than {MAX_PATH_CHARS} characters")
	if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
		raise InvalidPathError(f"path {path!r} must be relative to the content root")
	if "\\" in path:
		raise InvalidPathError(f"path {path!r} contains a backslash")
	for segment in path.split("/"):
		validate_segment(segment, "path part")
	if path.endswith(PREV_SUFFIX) or path.endswith(TEMP_SUFFIX):
		raise InvalidPathError(f"path {path!r} names a backup or temporary file, not content")
	return path


def render_path(template: str, values: dict[str, str]) -> str:
	"""Fill a path rule such as 'plans/{plan}/subjects/{name}.json' with validated names."""
	if all(type(value) is str and _PLAIN_SEGMENT.fullmatch(value) for value in values.values()):
		try:
			path = template.format(**values)
		except (KeyError, IndexError, ValueError):
			path = None
		if path is not None and is_plain_path(path):  # each value is one part: it holds no "/"
			return path
	safe = {
		key: validate_segment(str(value) if value is not None else "", key) for key, value in values.items()
	}
	try:
		path = template.format(**safe)
	except KeyError as missing:
		raise InvalidPathError(f"path rule {template!r} needs a value for {missing}") from missing
	return validate_relpath(path)


def content_root(site_path: str | os.PathLike) -> Path:
	"""The content root of a site: `sites/SITE/public/files/memora_content`."""
	return Path(site_path).joinpath(*SITE_RELATIVE_ROOT)


def private_root(site_path: str | os.PathLike) -> Path:
	"""Where a site keeps what must not be served: `sites/SITE/private/memora_content`."""
	return Path(site_path).joinpath(*SITE_RELATIVE_PRIVATE_ROOT)


def default_private_root(root: str | os.PathLike) -> Path:
	"""The private root for a content root: the site's for a site's root, else a sibling `NAME.private`."""
	root = Path(root)
	if root.parts[-len(SITE_RELATIVE_ROOT) :] == SITE_RELATIVE_ROOT:
		return private_root(root.parents[len(SITE_RELATIVE_ROOT) - 1])
	return root.with_name(root.name + ".private")


def file_path(root: str | os.PathLike, path: str) -> Path:
	"""Absolute file path for a content path, guaranteed to lie under `root`."""
	root = Path(root)
	target = root.joinpath(*validate_relpath(path).split("/"))
	# Defence in depth against symlinks planted inside the root.
	real_root = os.path.realpath(root)
	if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
		raise InvalidPathError(f"path {path!r} resolves outside the content root")
	return target


def prev_path(private_root: str | os.PathLike, path: str) -> Path:
	"""Where the previous version of content path `path` is kept (FR-004): under the private root."""
	return Path(private_root, PREV_DIR, validate_relpath(path) + PREV_SUFFIX)


def is_content_file(name: str) -> bool:
	"""True for a content file name, False for `.prev` backups and temp files (left in public by older writers)."""
	return not (name.startswith(TEMP_PREFIX) or name.endswith(PREV_SUFFIX) or name.endswith(TEMP_SUFFIX))


def url_path(path: str) -> str:
	"""Percent-encode each part of a content path for use in a URL ('#', '?', Arabic, spaces)."""
	if not isinstance(path, str):
		# Checked before the cache, which would raise TypeError on a list or dict from a JSON batch.
		raise InvalidPathError(f"path must be text, got {type(path).__name__}")
	if _URL_SAFE.fullmatch(path) and is_plain_path(path):  # nothing to encode: most names
		return path
	return _url_path(path)


# What quote() leaves as it is, within a plain path: ASCII letters, digits, "_", "-", "." and "/".
_URL_SAFE = re.compile(r"[A-Za-z0-9_./-]+")


@functools.lru_cache(maxsize=4096)  # per process: a bounded few MB, the same for 10,000 or 100,000 files
def _url_path(path: str) -> str:
	return "/".join(quote(segment, safe="") for segment in validate_relpath(path).split("/"))
