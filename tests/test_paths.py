"""Path rules: nothing a document name or API caller sends may leave the content root, and legal
but unusual names (Arabic, spaces, '#', '?', '%') must work on disk and in URLs."""

import os
import random
import re
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from memora_storage.utils import paths
from memora_storage.utils.paths import InvalidPathError
from memora_storage.utils.store import ContentStore

UNUSUAL_NAMES = [
	"unit with spaces.json",
	"وحدة الجبر ١.json",
	"C#-basics.json",
	"what?.json",
	"100% done.json",
	"mixed وحدة #1 ?x=1&y=2 50%.json",
	"plus+equals=comma,semi;colon:at@.json",
]


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
	"""A store on a real directory, locks outside the content root as in a site."""
	return ContentStore(tmp_path / "content", tmp_path / "locks")


@pytest.mark.parametrize(
	("path", "message"),
	[
		("", "empty"),
		("../etc/passwd", "'..' is not allowed"),
		("plans/../../etc/passwd", "'..' is not allowed"),
		("plans/..", "'..' is not allowed"),
		("./manifest.json", "'.' is not allowed"),
		("plans/./manifest.json", "'.' is not allowed"),
		("/etc/passwd", "must be relative"),
		("//server/share.json", "must be relative"),
		("C:/Windows/win.ini", "must be relative"),
		("plans\\..\\secret.json", "backslash"),
		("units\\u1.json", "backslash"),
		("units/u1\0.json", "control character U+0000"),
		("units/u1\n.json", "control character U+000A"),
		("units/u1\r.json", "control character U+000D"),
		("units/u1\x1b.json", "control character U+001B"),
		("units/u1\x7f.json", "control character U+007F"),
		("units/u1\x85.json", "control character U+0085"),
		("units//u1.json", "empty"),
		("units/", "empty"),
		("units/   ", "empty"),
		("units/.hidden.json", "starts with '.'"),
		(".htaccess", "starts with '.'"),
		("units/.u1.json.abc123.tmp", "starts with '.'"),
		("units/u1.json.prev", "backup or temporary"),
		("units/u1.json.tmp", "backup or temporary"),
	],
)
def test_unsafe_paths_are_refused_with_a_clear_message(path: str, message: str) -> None:
	with pytest.raises(InvalidPathError) as caught:
		paths.validate_relpath(path)
	assert message in str(caught.value)


@pytest.mark.parametrize("value", [None, b"units/u1.json", 42, ["units", "u1.json"]])
def test_non_text_paths_are_refused(value: object) -> None:
	with pytest.raises(InvalidPathError, match="must be text"):
		paths.validate_relpath(value)  # type: ignore[arg-type]


def test_overlong_paths_are_refused() -> None:
	path = "/".join(["a" * 100] * 11)
	with pytest.raises(InvalidPathError, match=f"longer than {paths.MAX_PATH_CHARS} characters"):
		paths.validate_relpath(path)
	longest = "/".join(["a" * 99] * 10)  # 10 names of 99 and 9 separators: 999
	assert paths.validate_relpath(longest + "b") == longest + "b"  # exactly MAX_PATH_CHARS is fine
	with pytest.raises(InvalidPathError, match="longer than"):
		paths.validate_relpath(longest + "bc")


@pytest.mark.parametrize("path", ["C:", "c:", "C:/x.json", "d:units.json"])
def test_drive_letters_are_refused(path: str) -> None:
	with pytest.raises(InvalidPathError, match="must be relative"):
		paths.validate_relpath(path)


@pytest.mark.parametrize("name", ["a" * 256, "ب" * 128, "a" * 251 + ".json"])
def test_names_over_255_bytes_are_refused(name: str) -> None:
	assert len(name.encode()) > 255
	with pytest.raises(InvalidPathError, match=r"longer than \d+ bytes"):
		paths.validate_relpath(f"units/{name}")
	with pytest.raises(InvalidPathError, match=r"longer than \d+ bytes"):
		paths.validate_segment(name, "unit")


def test_longest_accepted_name_can_really_be_written_kept_and_rolled_back(store: ContentStore) -> None:
	"""A name the rules accept must survive the store's `NAME.prev` decoration (temp names are fixed-size)."""
	name = "ع" * ((paths.MAX_NAME_BYTES - 5) // 2) + "x" * ((paths.MAX_NAME_BYTES - 5) % 2) + ".json"
	assert len(name.encode()) == paths.MAX_NAME_BYTES == 250
	path = f"units/{name}"
	store.write(path, b"one\n")
	store.write(path, b"two\n")
	store.rollback(path)
	assert store.read(path) == b"one\n"
	assert sorted(os.listdir(store.root / "units")) == [name]
	assert sorted(os.listdir(store.private_root / "prev" / "units")) == [name + ".prev"]


def test_names_too_long_for_the_prev_are_refused_before_any_write(store: ContentStore) -> None:
	"""255 bytes fit a file system, but not once the store adds `.prev`."""
	name = "a" * (255 - 5 - 4) + ".json"
	with pytest.raises(InvalidPathError, match=re.escape("less room for the '.prev' copy")):
		store.write(f"units/{name}", b"{}\n")
	assert not (store.root / "units").exists()


@pytest.mark.parametrize(
	"path",
	[
		"plans/P1/manifest.json",
		"plans/P1/subjects/S-01.json",
		"units/U 1.json",
		"units/a..b.json",
		"units/prev.json",
		"units/x.prev.json",
		"units/tmp",
		"a",  # one character: no drive letter to look for
		"ab",
		"XX/X.json",
		"units/a:b.json",  # a colon past the second character is no drive
	],
)
def test_ordinary_paths_are_accepted_unchanged(path: str) -> None:
	assert paths.validate_relpath(path) == path


def test_render_path_fills_a_rule_with_validated_names() -> None:
	rule = "plans/{plan}/subjects/{name}.json"
	assert paths.render_path(rule, {"plan": "خطة ١", "name": "S#1"}) == "plans/خطة ١/subjects/S#1.json"
	with pytest.raises(InvalidPathError, match=re.escape("plan '..'")):
		paths.render_path(rule, {"plan": "..", "name": "S1"})
	with pytest.raises(InvalidPathError, match="name 'a/b' contains a path separator"):
		paths.render_path(rule, {"plan": "P1", "name": "a/b"})
	with pytest.raises(InvalidPathError, match="plan is empty"):
		paths.render_path(rule, {"plan": None, "name": "S1"})
	with pytest.raises(InvalidPathError, match="needs a value for 'name'"):
		paths.render_path(rule, {"plan": "P1"})


@pytest.mark.parametrize("name", UNUSUAL_NAMES)
def test_unusual_legal_names_work_on_disk(store: ContentStore, name: str) -> None:
	path = f"units/{name}"
	data = ('{"name": "' + name.replace('"', "") + '"}\n').encode()
	store.write(path, data)
	assert os.listdir(store.root / "units") == [name]
	assert (store.root / "units" / name).read_bytes() == data
	assert store.read(path) == data


@pytest.mark.parametrize("name", UNUSUAL_NAMES)
def test_unusual_legal_names_are_percent_encoded_in_urls_and_round_trip(name: str) -> None:
	path = f"plans/خطة 1/{name}"
	encoded = paths.url_path(path)
	assert encoded.isascii()
	for raw in " #?%":
		if raw != "%":
			assert raw not in encoded
	parts = encoded.split("/")
	assert len(parts) == 3, "only the separators between parts stay as '/'"
	assert "/".join(unquote(part) for part in parts) == path
	split = urlsplit(f"https://cdn.example.com/{encoded}")
	assert (split.query, split.fragment) == ("", "")
	assert unquote(split.path) == f"/{path}"


def test_url_path_encodes_exact_bytes() -> None:
	assert paths.url_path("units/a b#?%.json") == "units/a%20b%23%3F%25.json"
	assert paths.url_path("units/ب.json") == "units/%D8%A8.json"


def test_url_path_refuses_unsafe_paths() -> None:
	with pytest.raises(InvalidPathError):
		paths.url_path("../secret.json")


@pytest.mark.parametrize("value", [None, 7, ["units", "u1.json"], {"path": "units/u1.json"}])
def test_url_path_refuses_non_text_with_invalid_path_error(value: object) -> None:
	"""A JSON batch can carry lists or dicts: that is a bad request, not a TypeError from the cache."""
	with pytest.raises(InvalidPathError, match="must be text"):
		paths.url_path(value)  # type: ignore[arg-type]


def test_file_path_stays_under_root(tmp_path: Path) -> None:
	root = tmp_path / "content"
	assert paths.file_path(root, "plans/P1/manifest.json") == root / "plans" / "P1" / "manifest.json"
	with pytest.raises(InvalidPathError):
		paths.file_path(root, "plans/../../outside.json")


def test_symlinked_folder_pointing_outside_the_root_is_refused(tmp_path: Path, store: ContentStore) -> None:
	outside = tmp_path / "outside"
	outside.mkdir()
	store.root.mkdir(parents=True)
	(store.root / "plans").symlink_to(outside, target_is_directory=True)
	with pytest.raises(InvalidPathError, match="resolves outside the content root"):
		paths.file_path(store.root, "plans/P1/manifest.json")
	with pytest.raises(InvalidPathError, match="resolves outside the content root"):
		store.write("plans/P1/manifest.json", b"{}\n")
	assert list(outside.iterdir()) == []


def test_symlinked_file_pointing_outside_the_root_is_refused(tmp_path: Path, store: ContentStore) -> None:
	secret = tmp_path / "secret.txt"
	secret.write_bytes(b"do not touch\n")
	(store.root / "units").mkdir(parents=True)
	(store.root / "units" / "u1.json").symlink_to(secret)
	with pytest.raises(InvalidPathError, match="resolves outside the content root"):
		paths.file_path(store.root, "units/u1.json")
	with pytest.raises(InvalidPathError):
		store.read("units/u1.json")
	with pytest.raises(InvalidPathError):
		store.write("units/u1.json", b"overwritten\n")
	with pytest.raises(InvalidPathError):
		store.remove("units/u1.json")
	assert secret.read_bytes() == b"do not touch\n"


def test_symlink_inside_the_root_to_a_folder_inside_the_root_is_allowed(store: ContentStore) -> None:
	(store.root / "real").mkdir(parents=True)
	(store.root / "alias").symlink_to(store.root / "real", target_is_directory=True)
	assert paths.file_path(store.root, "alias/u1.json") == store.root / "alias" / "u1.json"


def test_root_reached_through_a_symlink_still_resolves(tmp_path: Path) -> None:
	"""Sites are often symlinked (`sites` → a shared mount); that alone must not look like an escape."""
	real = tmp_path / "real-root"
	real.mkdir()
	link = tmp_path / "link-root"
	link.symlink_to(real, target_is_directory=True)
	assert paths.file_path(link, "units/u1.json") == link / "units" / "u1.json"


@pytest.mark.parametrize(
	("name", "expected"),
	[
		("manifest.json", True),
		("وحدة.json", True),
		("manifest.json.prev", False),
		(".manifest.json.k2j4h5g1.tmp", False),
		("manifest.json.tmp", False),
	],
)
def test_is_content_file(name: str, expected: bool) -> None:
	assert paths.is_content_file(name) is expected


def test_content_root_and_prev_path(tmp_path: Path) -> None:
	site = tmp_path / "site1"
	assert paths.content_root(site) == site / "public" / "files" / "memora_content"
	assert paths.private_root(site) == site / "private" / "memora_content"
	assert paths.prev_path(paths.private_root(site), "plans/P1/manifest.json") == (
		site / "private" / "memora_content" / "prev" / "plans" / "P1" / "manifest.json.prev"
	)
	with pytest.raises(InvalidPathError):
		paths.prev_path(paths.private_root(site), "../site_config.json")


def test_default_private_root(tmp_path: Path) -> None:
	"""A site's content root maps to the site's private folder, never `private/files` (which Frappe
	serves); any other root gets a sibling."""
	site = tmp_path / "sites" / "site1"
	assert paths.default_private_root(paths.content_root(site)) == site / "private" / "memora_content"
	assert paths.default_private_root(tmp_path / "content") == tmp_path / "content.private"


def test_render_path_fast_check_agrees_with_the_rules() -> None:
	"""Plain names take a regex instead of the per-character rules: the same path, or the same refusal."""
	rng = random.Random(7)
	alphabet = "aZ٣_- .\x00/\\:é😀"
	rules = ["plans/{plan}/subjects/{name}.json", "units/{name}.json", "{name}", "x/{name}{plan}"]
	for _ in range(20000):
		values = {
			key: "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 3, 49, 50, 51, 120))))
			for key in ("plan", "name")
		}
		if rng.random() < 0.2:
			values["name"] += rng.choice((".prev", ".tmp", "..", ".json"))
		rule = rng.choice(rules)
		try:
			expected = paths.validate_relpath(
				rule.format(**{key: paths.validate_segment(value) for key, value in values.items()})
			)
		except paths.InvalidPathError:
			expected = None
		try:
			got = paths.render_path(rule, values)
		except paths.InvalidPathError:
			got = None
		assert got == expected, (rule, values)


def test_url_path_fast_check_agrees_with_quote() -> None:
	"""Names with nothing to encode skip quote(): the same URL path either way."""
	rng = random.Random(11)
	alphabet = "aZ9_-. /#?%٣é"
	for _ in range(20000):
		path = "/".join(
			"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 4))
		)
		try:
			expected = "/".join(quote(part, safe="") for part in paths.validate_relpath(path).split("/"))
		except InvalidPathError:
			expected = None
		try:
			got = paths.url_path(path)
		except InvalidPathError:
			got = None
		assert got == expected, path
