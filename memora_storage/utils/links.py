"""Links inside content files, rewritten in place: what a relink does instead of a render.

A link is any JSON string value that starts with a known URL base (a local base such as
`https://site/files/memora_content` or a CDN Base URL, old or new) followed by `/` and a
percent-encoded content path, optionally with a query (`?v=…`) or a fragment. The path is read
back from the link, and the string replaced by the URL the caller says the path must have now.
Object keys are never links: a render puts URLs in values only. The result is the file's canonical
form (`canonical.dumps`), exactly what a render of the same data gives.

`switch` moves a few known links byte for byte, for a save whose children left the CDN.

Bytes that are not a JSON document raise `LinkError`: such a file was not written by a render, and
the caller must report it rather than count it as already right.
"""

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote

from memora_storage.utils import canonical
from memora_storage.utils.paths import (
	MAX_NAME_BYTES,
	MAX_PATH_CHARS,
	PREV_SUFFIX,
	TEMP_SUFFIX,
	InvalidPathError,
	validate_relpath,
)

# Paths every render makes (ASCII names, no leading '.') pass `validate_relpath` for sure: this match
# costs a tenth of it, and 16 links in a 2 KB subject file made validation half of a rewrite's time.
# Anything else (Arabic names, spaces) takes the full check.
_SEGMENT = rf"[A-Za-z0-9_-][A-Za-z0-9._~-]{{0,{MAX_NAME_BYTES - 1}}}"
_PLAIN_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")


class LinkError(ValueError):
	"""A file that is not a JSON document: it has no links to rewrite, and the caller must say so."""


class Bases:
	"""The URL bases links may start with (no trailing slash needed); the longest one wins where
	bases nest, so `https://cdn/memora/x` is read against `https://cdn/memora` before `https://cdn`."""

	def __init__(self, bases: Iterable[str]):
		stripped = {base.rstrip("/") for base in bases}
		self.bases = tuple(sorted((base + "/" for base in stripped if base), key=len, reverse=True))

	def path_of(self, value: str) -> str | None:
		"""The content path a link names, or None for a string that is not one of our links."""
		if not value.startswith(self.bases):  # one C call answers for nearly every string
			return None
		for base in self.bases:
			if value.startswith(base):
				return content_path(value[len(base) :])
		return None


def content_path(rest: str) -> str | None:
	"""The content path of a link's part after its base: query and fragment cut, percent-decoded,
	validated; None if that is no content path (`..`, `%FF`, an encoded `/`)."""
	encoded = rest.partition("?")[0].partition("#")[0]
	path = encoded
	if "%" in encoded:
		try:
			path = unquote(encoded, errors="strict")
		except UnicodeDecodeError:
			return None
		if path.count("/") != encoded.count("/"):
			return None  # `%2F` is no separator in our URLs: url_path encodes none
	if (
		len(path) <= MAX_PATH_CHARS
		and _PLAIN_PATH.fullmatch(path)
		and not path.endswith((PREV_SUFFIX, TEMP_SUFFIX))
	):
		return path
	try:
		return validate_relpath(path)
	except InvalidPathError:
		return None


def rewrite(data: bytes, bases: Bases, url_for: Callable[[str], str | None]) -> bytes | None:
	"""`data` with every link replaced by `url_for(path)` (None leaves that link alone), as
	`canonical.dumps` of the changed document; None when no link changes. Raises LinkError for
	bytes that are not JSON."""
	try:
		document = json.loads(data)
	except (ValueError, UnicodeDecodeError) as e:
		raise LinkError(f"not a JSON document: {e}") from e
	holder = [document]  # a document that is a bare string is a link too
	if not _relink(holder, bases, url_for):
		return None
	return canonical.dumps(holder[0])


def _relink(node: dict | list, bases: Bases, url_for: Callable[[str], str | None]) -> bool:
	"""Replace links in `node` and below, in place (json.loads gave us the objects); True if any changed."""
	changed = False
	prefixes = bases.bases
	entries: Iterable[tuple[Any, Any]] = node.items() if type(node) is dict else enumerate(node)
	for key, value in entries:
		kind = type(value)
		if kind is str:
			if value.startswith(prefixes):
				path = bases.path_of(value)
				url = url_for(path) if path is not None else None
				if url is not None and url != value:
					node[key] = url  # a value, not a key: the dict's size does not change while iterated
					changed = True
		elif kind is dict or kind is list:
			changed = _relink(value, bases, url_for) or changed
	return changed


def switch(data: bytes, changes: dict[str, str]) -> bytes | None:
	"""`data` with each link `old` of `changes` replaced by its `new`, byte for byte: what a render
	gives when only those links move, at the cost of a search instead of a render. A link is a whole
	string value (after the space or newline `canonical.dumps` puts before every value), never a key.
	None where a render must decide: an `old` that is not there while its `new` is not either."""
	for old, new in changes.items():
		old_text, new_text = _json_text(old), _json_text(new)
		found = list(_values(data, old_text))
		if not found:
			if next(_values(data, new_text), None) is None:
				return None
			continue  # linked here already
		parts, start = [], 0
		for at in found:
			parts += [data[start:at], new_text]
			start = at + len(old_text)
		data = b"".join([*parts, data[start:]])
	return data


def _values(data: bytes, text: bytes) -> Iterator[int]:
	"""Where `text` (JSON text, quotes included) stands as a whole string value in `data`: found by
	bytes.find, which a pattern starting with a look-behind would make ten times slower."""
	at = data.find(text)
	while at >= 0:
		end = at + len(text)
		if at and data[at - 1] in b" \n" and data[end : end + 1] != b":":
			yield at
		at = data.find(text, end)


def _json_text(value: str) -> bytes:
	"""A string as `canonical.dumps` writes it, quotes included."""
	return canonical.dumps(value)[:-1]
