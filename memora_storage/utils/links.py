"""Links inside content files, rewritten in place: what a relink does instead of a render.

A link is any JSON string that starts with a known URL base (a local base such as
`https://site/files/memora_content` or a CDN Base URL, old or new) followed by `/` and a
percent-encoded content path, optionally with a query (`?v=…`). The path is read back from the
link, and the string replaced by the URL the caller says the path must have now. The result is
the file's canonical form (`canonical.dumps`), exactly what a render of the same data gives.
"""

import json
from collections.abc import Callable, Iterable
from urllib.parse import unquote

from memora_storage.utils import canonical
from memora_storage.utils.paths import InvalidPathError, validate_relpath


class LinkError(ValueError):
	"""A file that is not a JSON document: it has no links to rewrite, and the caller must say so."""


class Bases:
	"""The URL bases links may start with; the longest matching one wins where bases nest."""

	def __init__(self, bases: Iterable[str]):
		self.bases = sorted({base.rstrip("/") + "/" for base in bases if base}, key=len, reverse=True)
		self._first = tuple({base[:8] for base in self.bases})  # cheap test before the real one

	def path_of(self, value: str) -> str | None:
		"""The content path a link names, or None for a string that is not one of our links."""
		if not value.startswith(self._first):
			return None
		for base in self.bases:
			if value.startswith(base):
				rest = value[len(base) :]
				break
		else:
			return None
		for mark in ("?", "#"):
			rest = rest.partition(mark)[0]
		try:
			return validate_relpath(unquote(rest))
		except InvalidPathError:
			return None


def rewrite(data: bytes, bases: Bases, url_for: Callable[[str], str | None]) -> bytes | None:
	"""`data` with every link replaced by `url_for(path)` (None leaves a link alone); None when
	nothing changes. Raises LinkError for bytes that are not JSON."""
	try:
		document = json.loads(data)
	except (ValueError, UnicodeDecodeError) as e:
		raise LinkError(f"not a JSON document: {e}") from e
	changed = False

	def walk(node):
		nonlocal changed
		if isinstance(node, str):
			path = bases.path_of(node)
			if path is not None and (url := url_for(path)) is not None and url != node:
				changed = True
				return url
			return node
		if isinstance(node, dict):
			return {key: walk(value) for key, value in node.items()}
		if isinstance(node, list):
			return [walk(value) for value in node]
		return node

	document = walk(document)
	if not changed:
		return None
	new = canonical.dumps(document)
	return None if new == data else new
