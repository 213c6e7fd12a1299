"""canonical.dumps writes exactly the bytes json.dumps(indent=1, sort_keys=True) did: every file
already on disk and on the CDN keeps its hash."""

import datetime
import decimal
import json
import random

import pytest

from memora_storage.utils import canonical


def standard(data) -> bytes:
	text = json.dumps(data, ensure_ascii=False, sort_keys=True, indent=1, default=canonical._default)
	return (text + "\n").encode("utf-8")


class Name(str):
	"""A str subclass, as Frappe's documents can hold."""


LEAVES = [
	None,
	True,
	False,
	0,
	-(10**20),
	1.5,
	-0.0,
	1e16,
	float("nan"),
	float("inf"),
	float("-inf"),
	"",
	'quote " backslash \\ newline \n tab \t nul \x00',
	"عربي \u2028 😀 </script>",
	Name("a subclass"),
	datetime.datetime(2026, 12, 7, 6, 30, 1, 5),
	datetime.date(2026, 12, 7),
	datetime.timedelta(hours=1, seconds=3),
	decimal.Decimal("2.50"),
	{3, 1, 2},
	(1, "two"),
]


def random_document(rng: random.Random, depth: int = 0):
	roll = rng.random()
	if depth > 4 or roll < 0.4:
		return rng.choice(LEAVES)
	if roll < 0.7:
		return [random_document(rng, depth + 1) for _ in range(rng.randint(0, 4))]
	return {
		rng.choice("abzك") + str(rng.randint(0, 9)): random_document(rng, depth + 1)
		for _ in range(rng.randint(0, 5))
	}


def test_random_documents_match_the_standard_library():
	rng = random.Random(20261207)
	for _ in range(5000):
		document = random_document(rng)
		assert canonical.dumps(document) == standard(document), document


@pytest.mark.parametrize(
	"document",
	[
		{},
		[],
		{"b": 1, "a": {"d": [], "c": {}}},
		{1: "int key", 2: "sorted as ints"},
		{True: "bool key"},
		{None: "null key"},
		{1.5: "float key"},
		{Name("k"): Name("v")},
		{"children": [{"name": f"u{i}", "title": f"Unit {i}", "url": f"/files/u{i}.json"} for i in range(3)]},
	],
)
def test_shapes_match_the_standard_library(document):
	assert canonical.dumps(document) == standard(document)


def test_what_json_cannot_hold_is_refused():
	with pytest.raises(TypeError, match="object is not JSON serialisable"):
		canonical.dumps({"a": object()})
	with pytest.raises(TypeError, match="keys must be"):
		canonical.dumps({(1, 2): "tuple key"})
