"""Deterministic JSON bytes: the same document always gives the same bytes, so hashes mean something.

The bytes are `json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1)` plus a newline, the
format every file on disk and on the CDN already has. The standard library writes an indented
document with its pure-Python encoder, a third of a Desk save's time for a Subject listing a
thousand Units; `dumps` builds the same text itself, with the C string encoder for every string.
"""

import datetime
import decimal
import hashlib
from json.encoder import encode_basestring
from typing import Any

_INFINITY = float("inf")


def _default(value: Any) -> Any:
	if isinstance(value, datetime.datetime | datetime.date | datetime.time):
		return value.isoformat()
	if isinstance(value, datetime.timedelta):
		return str(value)
	if isinstance(value, decimal.Decimal):
		return float(value)
	if isinstance(value, set | frozenset):
		return sorted(value)
	raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> bytes:
	"""UTF-8 JSON with sorted keys and no `\\u` escapes (Arabic stays readable), ending in a newline."""
	parts: list[str] = []
	_encode(data, parts, "\n")
	parts.append("\n")
	return "".join(parts).encode("utf-8")


def sha256(data: bytes) -> str:
	"""Hex SHA-256 of `data`: the identity of a file version, locally and on the CDN."""
	return hashlib.sha256(data).hexdigest()


def _encode(value: Any, parts: list[str], newline: str, depth: int = 0) -> None:
	"""Append `value` as json.dumps writes it at this nesting (`newline`: a newline and its indent)."""
	if type(value) is str:  # the usual leaf, first
		parts.append(encode_basestring(value))
	elif isinstance(value, dict):
		if not value:
			parts.append("{}")
			return
		inner = newline + " "
		lead = "{" + inner
		for key, item in sorted(value.items()):
			parts.append(lead + encode_basestring(key if type(key) is str else _key(key)) + ": ")
			lead = "," + inner
			if type(item) is str:
				parts.append(encode_basestring(item))
			else:
				_encode(item, parts, inner, depth + 1)
		parts.append(newline + "}")
	elif isinstance(value, list | tuple):
		if not value:
			parts.append("[]")
			return
		inner = newline + " "
		lead = "[" + inner
		for item in value:
			parts.append(lead)
			lead = "," + inner
			_encode(item, parts, inner, depth + 1)
		parts.append(newline + "]")
	elif (text := _scalar(value)) is not None:
		parts.append(text)
	else:
		if depth > 900:  # as json.dumps: a default that keeps returning new objects cannot recurse forever
			raise RecursionError("maximum recursion depth exceeded while encoding a JSON object")
		_encode(_default(value), parts, newline, depth + 1)


def _scalar(value: Any) -> str | None:
	"""A string, number, boolean or null as JSON; None for anything else."""
	if isinstance(value, str):
		return encode_basestring(value)
	if value is None:
		return "null"
	if value is True:
		return "true"
	if value is False:
		return "false"
	if isinstance(value, int):
		return int.__repr__(value)
	if isinstance(value, float):
		return _float(value)
	return None


def _key(key: Any) -> str:
	"""A dict key as json.dumps turns it into a string: a number, boolean or null as its JSON text."""
	if isinstance(key, str):
		return key
	if (text := _scalar(key)) is None:
		raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
	return text


def _float(value: float) -> str:
	if value != value:
		return "NaN"
	if value == _INFINITY:
		return "Infinity"
	if value == -_INFINITY:
		return "-Infinity"
	return float.__repr__(value)
