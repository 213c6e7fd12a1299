"""Deterministic JSON bytes: the same document always gives the same bytes, so hashes mean something."""

import datetime
import decimal
import hashlib
import json
from typing import Any


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
	text = json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1, default=_default)
	return (text + "\n").encode("utf-8")


def sha256(data: bytes) -> str:
	"""Hex SHA-256 of `data`: the identity of a file version, locally and on the CDN."""
	return hashlib.sha256(data).hexdigest()
