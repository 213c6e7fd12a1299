"""docs/requirements.md defines every requirement ID the code cites, and names only code and tests that exist.

Comments in memora_storage/, tests/ and benchmarks/ cite requirement IDs (the spec's FR- and SC-
numbers, and the page's own US and EDGE IDs); each must be a heading of the page. The page names
files, dotted code paths and tests (`FILE::test_name`, `FILE::TestCase.test_name`); each must exist,
read with `ast`, never imported (the Frappe layer cannot be imported without a site).
"""

import functools
import re
from pathlib import Path

from source_tree import find_test, resolve

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "requirements.md"
SOURCE_DIRS = ("memora_storage", "tests", "benchmarks")

ID = re.compile(r"(?<![\w-])(FR-\d+|SC-\d+|US\d+-\d+|EDGE-[a-z]+(?:-[a-z]+)*)(?![\w-])")
# How requirements were cited before this page existed: by the spec's wording, or a file outside the repository.
STALE = re.compile(
	r"(?i:\bUS\d+\s*AC\d+\b|\bspec edge cases?\b|\b(?:DESIGN|SPEC)\.md\b)"
	r'|"(?:Disk Full|Permission Denied|Concurrent Writes|File Overwrite|Network Partition|Retry Exhaustion'
	r'|Settings Change Race)"'
)
HEADING = re.compile(r"^(#{1,6})\s+(\S+)", re.MULTILINE)
SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"(?:memora_storage|tests|benchmarks|docs)/[^\s:`]+\.\w+")
DOTTED = re.compile(r"memora_storage(?:\.[A-Za-z_]\w*)+")


def sources() -> list[Path]:
	return sorted(path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py"))


@functools.cache
def page() -> str:
	return PAGE.read_text(encoding="utf-8")


def headings() -> list[str]:
	"""The first word of every heading: the ID of a requirement's section."""
	return [match.group(2) for match in HEADING.finditer(page())]


def sections() -> dict[str, str]:
	"""Each requirement's ID and the text of its section, up to the next heading."""
	found = {}
	matches = list(HEADING.finditer(page()))
	for match, following in zip(matches, [*matches[1:], None], strict=True):
		if ID.fullmatch(match.group(2)):
			found[match.group(2)] = page()[match.end() : following.start() if following else None]
	return found


def spans() -> list[str]:
	return SPAN.findall(page())


def test_every_cited_id_is_a_heading_of_the_page():
	defined = set(headings())
	missing = sorted(
		f"{path.relative_to(ROOT)}:{number}: {found}"
		for path in sources()
		for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
		for found in ID.findall(line)
		if found not in defined
	)
	assert missing == []


def test_the_code_cites_no_requirement_by_the_specs_wording():
	stale = sorted(
		f"{path.relative_to(ROOT)}:{number}: {match.group()}"
		for path in sources()
		if path != Path(__file__).resolve()
		for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
		for match in STALE.finditer(line)
	)
	assert stale == []


def test_every_functional_requirement_and_success_criterion_has_its_section():
	expected = [f"FR-{n:03d}" for n in range(1, 18)] + [f"SC-{n:03d}" for n in range(1, 8)]
	ids = [heading for heading in headings() if ID.fullmatch(heading)]
	assert [i for i in expected if i not in ids] == []
	assert len(ids) == len(set(ids)), "an ID heads two sections"


def test_every_section_names_a_test_or_a_benchmark():
	bare = [
		requirement
		for requirement, text in sections().items()
		if not re.search(r"`(?:tests|memora_storage/tests)/\S+::\w|`benchmarks/bench_\w+\.py`", text)
	]
	assert bare == []


def test_cited_files_exist():
	missing = sorted(
		{
			path
			for span in spans()
			if (match := REPO_PATH.match(span))
			for path in [match.group()]
			if not list(ROOT.glob(path))
		}
	)
	assert missing == []


def test_cited_tests_exist():
	cited = [span for span in spans() if REPO_PATH.match(span) and "::" in span]
	assert len(cited) > 50  # the parsing sees the page's test names
	missing = []
	for span in cited:
		file, _, name = span.partition("::")
		path = ROOT / file
		if not (path.is_file() and path.name.startswith("test_") and find_test(path, name)):
			missing.append(span)
	assert missing == []


def test_cited_code_paths_resolve():
	cited = {match.group() for span in spans() for match in DOTTED.finditer(span)}
	assert "memora_storage.api.get_content_url" in cited
	assert sorted(dotted for dotted in cited if resolve(dotted) is None) == []


def test_the_checks_catch_mistakes():
	assert resolve("memora_storage.utils.store.ContentStore.write")
	assert resolve("memora_storage.utils.store.ContentStore.no_such_method") is None
	assert find_test(ROOT / "tests" / "test_store.py", "test_write_then_read")
	assert not find_test(ROOT / "tests" / "test_store.py", "test_no_such_test")
	assert not find_test(ROOT / "tests" / "test_store.py", "NoSuchCase.test_write_then_read")
	assert ID.findall("(FR-016, SC-006), US3-2 and EDGE-settings-race.") == [
		"FR-016",
		"SC-006",
		"US3-2",
		"EDGE-settings-race",
	]
	assert STALE.search("(US3 AC2)") and STALE.search("spec edge cases")
	assert STALE.search('halfway ("Settings Change Race")') and not STALE.search('"permission denied"')
