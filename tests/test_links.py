"""Relinking in place: links found and rewritten in any JSON shape, to exactly what a render gives.

`rewrite_many`, which writes the results back in batches, is tested in test_store_batch.py."""

import json

import pytest

from memora_storage.utils import canonical, links
from memora_storage.utils.resolver import UrlSettings, build_url

SITE = "https://site.example"
LOCAL = f"{SITE}/files/memora_content"
CDN = "https://cdn.example.com/memora"
OLD_CDN = "https://old-cdn.example.com"
BASES = links.Bases([LOCAL, CDN, OLD_CDN, f"{CDN}/nested"])
LOCAL_SETTINGS = UrlSettings(local_domain=SITE)
VERSIONED_CDN = UrlSettings(local_domain=SITE, enable_cdn=True, cdn_base_url=CDN, version_in_urls=True)


def to_local(path: str) -> str:
	return build_url(path, LOCAL_SETTINGS)


def subject(base: str, units: list[str], **extra) -> bytes:
	return canonical.dumps(
		{
			"doctype": "Subject",
			"name": "S1",
			"units": [{"name": u, "title": u, "url": f"{base}/units/{u}.json"} for u in units],
			**extra,
		}
	)


def rewritten(data: bytes, url_for=to_local) -> dict:
	new = links.rewrite(data, BASES, url_for)
	assert new is not None, "no link changed"
	assert new == canonical.dumps(json.loads(new)), "not canonical bytes"
	return json.loads(new)


def test_links_are_rewritten_to_what_a_render_gives() -> None:
	data = subject(CDN, ["U1", "U2"])
	new = links.rewrite(data, BASES, to_local)
	assert new == subject(LOCAL, ["U1", "U2"])
	assert links.rewrite(new, BASES, to_local) is None  # nothing left to change


def test_links_anywhere_in_the_document_with_versions_and_encoding() -> None:
	url = build_url("units/وحدة 1.json", VERSIONED_CDN, True, "ab" * 32)
	assert "?v=abababababab" in url and "%D9%88" in url
	data = canonical.dumps({"deep": [{"x": {"link": url}}], "old": f"{OLD_CDN}/units/U2.json#top"})
	seen = []

	def url_for(path: str) -> str:
		seen.append(path)
		return to_local(path)

	new = rewritten(data, url_for)
	assert sorted(seen) == ["units/U2.json", "units/وحدة 1.json"]
	assert new["deep"][0]["x"]["link"] == to_local("units/وحدة 1.json")
	assert new["old"] == to_local("units/U2.json")


def test_a_version_query_is_replaced_by_the_new_version() -> None:
	old = build_url("units/U1.json", VERSIONED_CDN, True, "1" * 64)
	new_version = build_url("units/U1.json", VERSIONED_CDN, True, "2" * 64)
	new = rewritten(canonical.dumps({"url": old}), lambda path: new_version)
	assert new == {"url": f"{CDN}/units/U1.json?v=222222222222"}


@pytest.mark.parametrize("order", [1, -1])
def test_the_longest_base_wins_whatever_order_the_bases_come_in(order: int) -> None:
	bases = links.Bases([CDN, f"{CDN}/nested", f"{CDN}/nested/deeper"][::order])
	assert bases.path_of(f"{CDN}/nested/deeper/units/U1.json") == "units/U1.json"
	assert bases.path_of(f"{CDN}/nested/units/U1.json") == "units/U1.json"
	assert bases.path_of(f"{CDN}/nested-not/units/U1.json") == "nested-not/units/U1.json"
	data = canonical.dumps({"a": f"{CDN}/nested/units/U1.json"})
	assert json.loads(links.rewrite(data, bases, to_local)) == {"a": to_local("units/U1.json")}


def test_the_longest_base_wins_and_other_strings_are_left_alone() -> None:
	seen = []
	data = canonical.dumps(
		{
			"a": f"{CDN}/nested/units/U1.json",
			"text": "see https://elsewhere.example/units/U1.json",
			"external": "https://elsewhere.example/units/U1.json",
			"traversal": f"{CDN}/../secret.json",
			"unknown": f"{CDN}/units/U9.json",
		}
	)

	def url_for(path: str) -> str | None:
		seen.append(path)
		return None if path == "units/U9.json" else to_local(path)

	new = rewritten(data, url_for)
	assert seen == ["units/U1.json", "units/U9.json"]  # nested base stripped whole; traversal refused
	assert new["a"] == to_local("units/U1.json")
	assert new["text"] == "see https://elsewhere.example/units/U1.json"
	assert new["external"] == "https://elsewhere.example/units/U1.json"
	assert new["traversal"] == f"{CDN}/../secret.json"
	assert new["unknown"] == f"{CDN}/units/U9.json"


@pytest.mark.parametrize(
	"rest",
	[
		"",  # the base alone
		"units/",  # a folder
		"units/U1.json.prev",  # a backup
		"units/.U1.json.1234.tmp",  # a temp file
		".hidden/U1.json",
		"units/%FF.json",  # no UTF-8 behind the escape
		"units%2FU1.json",  # an escaped separator, which url_path never writes
		"units/a%00b.json",  # a control character
		"units//U1.json",
	],
)
def test_what_is_no_content_path_is_left_alone(rest: str) -> None:
	data = canonical.dumps({"url": f"{CDN}/{rest}", "ok": f"{CDN}/units/U1.json"})
	seen = []

	def url_for(path: str) -> str:
		seen.append(path)
		return to_local(path)

	new = rewritten(data, url_for)
	assert seen == ["units/U1.json"]
	assert new == {"url": f"{CDN}/{rest}", "ok": to_local("units/U1.json")}


def test_bases_given_with_a_trailing_slash_match_the_same_links() -> None:
	bases = links.Bases([CDN + "/", LOCAL + "//"])
	assert bases.path_of(f"{CDN}/units/U1.json") == "units/U1.json"
	assert bases.path_of(f"{LOCAL}/units/U1.json?v=1#x") == "units/U1.json"
	assert bases.path_of(f"{CDN}units/U1.json") is None  # the base must end where a segment does
	box = links.Bases(["https://media.example/BOX/"])  # only slashes are stripped, not the letters before
	assert box.path_of("https://media.example/BOX/units/U1.json") == "units/U1.json"
	assert box.path_of("https://media.example/BO/units/U1.json") is None


def test_keys_are_not_links_and_a_bare_string_document_is() -> None:
	key = f"{CDN}/units/U1.json"
	assert links.rewrite(canonical.dumps({key: 1}), BASES, to_local) is None
	assert json.loads(links.rewrite(canonical.dumps(key), BASES, to_local)) == to_local("units/U1.json")


def test_a_link_already_right_changes_nothing() -> None:
	data = subject(LOCAL, ["U1"])
	assert links.rewrite(data, BASES, to_local) is None
	assert links.rewrite(subject(CDN, ["U1"]), BASES, lambda path: None) is None


def test_output_is_canonical_whatever_the_input_layout() -> None:
	"""A file laid out otherwise (compact, keys unsorted, `\\u` escapes) comes back as a render gives it."""
	document = {"units": [{"url": f"{CDN}/units/وحدة.json", "title": "الوحدة"}], "b": 1.5, "a": None}
	data = json.dumps(document, separators=(",", ":")).encode()  # ASCII escapes, no indent, unsorted
	new = links.rewrite(data, BASES, to_local)
	document["units"][0]["url"] = to_local("units/وحدة.json")
	assert new == canonical.dumps(document)


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe{}", b""])
def test_bytes_that_are_not_json_are_refused(data: bytes) -> None:
	with pytest.raises(links.LinkError, match="not a JSON document"):
		links.rewrite(data, BASES, to_local)


# switch: a few known links moved byte for byte, for a save whose children left the CDN ------------


def test_switch_moves_only_the_links_named_to_what_a_render_gives() -> None:
	units = ["U1", "U2", "وحدة 3"]
	on_cdn = {u: build_url(f"units/{u}.json", VERSIONED_CDN, True, "ab" * 32) for u in units}
	rendered = canonical.dumps(
		{"units": [{"name": u, "url": on_cdn[u]} for u in units], "title": "S1", "name": "S1"}
	)
	moved = {on_cdn["U2"]: to_local("units/U2.json"), on_cdn["وحدة 3"]: to_local("units/وحدة 3.json")}
	expected = canonical.dumps(
		{
			"units": [{"name": u, "url": moved.get(on_cdn[u], on_cdn[u])} for u in units],
			"title": "S1",
			"name": "S1",
		}
	)
	assert links.switch(rendered, moved) == expected
	assert links.switch(expected, moved) == expected  # linked here already: nothing to move


def test_switch_leaves_keys_and_text_that_only_contains_a_link() -> None:
	link, local = f"{CDN}/units/U1.json", to_local("units/U1.json")
	data = canonical.dumps({link: 1, "quoted": f'"{link}', "note": f"see {link}", "url": link})
	assert json.loads(links.switch(data, {link: local})) == {
		link: 1,
		"quoted": f'"{link}',
		"note": f"see {link}",
		"url": local,
	}


def test_switch_gives_way_to_a_render_where_a_link_is_neither_old_nor_new() -> None:
	data = subject(f"{CDN}/nested", ["U1"])  # another base: only a render knows what it should be
	assert links.switch(data, {f"{CDN}/units/U1.json": to_local("units/U1.json")}) is None


def test_switch_writes_a_new_link_with_backslashes_as_json_does() -> None:
	link, odd = f"{CDN}/units/U1.json", f'{LOCAL}/units/a\\b"c.json'
	assert json.loads(links.switch(canonical.dumps({"url": link}), {link: odd})) == {"url": odd}
