"""The README and docs/ name commands, dotted paths, files and links that must work as written.

Checked without Frappe (the core suite has none): a dotted path `memora_storage.x.y` resolves when
module `x` exists in this checkout and defines `y` at its top level, read with `ast` rather than
imported; a `bench` command exists in frappe-bench's own CLI (installed in .venv) or in the list
below of Frappe v15's commands, which `test_frappe_commands_match_the_bench` compares with the
source of the bench named by MEMORA_BENCH when there is one.
"""

import ast
import functools
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from source_tree import resolve

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").rglob("*.md"))]

# Pages other engineers write alongside these; linked already, checked like any other once they exist.
WRITTEN_ELSEWHERE = {"docs/requirements.md"}

# Frappe v15's own commands that the docs use, with their options, as in
# apps/frappe/frappe/commands/*.py of Frappe v15.55.1. `bench --site SITE` takes these global options.
FRAPPE_GLOBAL_OPTIONS = {"--site": True, "--profile": False, "--verbose": False, "--force": False}
FRAPPE_V15_COMMANDS = {
	"add-to-hosts": set(),
	"clear-cache": set(),
	"doctor": {"--site"},
	"enable-scheduler": set(),
	"execute": {"--args", "--kwargs", "--profile"},
	"install-app": {"--force"},
	"list-apps": {"--format", "-f"},
	"migrate": {"--skip-failing", "--skip-search-index"},
	"new-site": {"--admin-password", "--db-root-password", "--db-root-username", "--install-app"},
	"run-tests": {"--app", "--case", "--doctype", "--failfast", "--junit-xml-output", "--module", "--test"},
	"schedule": set(),
	"serve": {"--port", "--noreload", "--proxy"},
	"set-config": {"--global", "--parse", "-g", "-p"},
	"show-pending-jobs": {"--site"},
	"uninstall-app": {"--dry-run", "--force", "--no-backup", "--yes", "-y"},
	"worker": {"--burst", "--queue", "--quiet", "--strategy"},
}
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}


@dataclass(frozen=True)
class Doc:
	path: Path
	text: str
	prose: str  # the text without its fenced code blocks
	blocks: tuple[tuple[str, str], ...]  # (language, body) of each fenced block

	@property
	def name(self) -> str:
		return self.path.relative_to(ROOT).as_posix()

	def spans(self) -> list[str]:
		"""Inline code spans of the prose, whitespace (line breaks included) collapsed."""
		return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", self.prose)]

	def command_lines(self) -> list[str]:
		"""Lines of the shell blocks (continuations joined) and inline spans: what a reader may run."""
		lines = []
		for language, body in self.blocks:
			if language in SHELL_BLOCKS:
				lines += [line.strip() for line in body.replace("\\\n", " ").splitlines() if line.strip()]
		return lines + self.spans()


@functools.cache
def read(path: Path) -> Doc:
	text = path.read_text(encoding="utf-8")
	blocks = tuple(
		(m.group(2).strip(), m.group(3))
		for m in re.finditer(r"^( *)```([^\n`]*)\n(.*?)^\1```[ \t]*$", text, re.MULTILINE | re.DOTALL)
	)
	prose = re.sub(r"^( *)```[^\n`]*\n.*?^\1```[ \t]*$", "", text, flags=re.MULTILINE | re.DOTALL)
	return Doc(path, text, prose, blocks)


def docs() -> list[Doc]:
	return [read(path) for path in DOCS]


def test_the_docs_exist():
	names = {doc.name for doc in docs()}
	for page in (
		"README.md",
		"docs/cdn.md",
		"docs/frontend.md",
		"docs/contributing.md",
		"docs/benchmarks.md",
		"docs/operators/settings.md",
		"docs/operators/failover.md",
		"docs/operators/scaling.md",
		"docs/operators/troubleshooting.md",
	):
		assert page in names


def test_readme_names_install_demo_and_the_test_command():
	"""./run-tests is THE test command: the CI gate runs it, the README tells readers to."""
	commands = read(README).command_lines()
	for expected in (
		"bench get-app URL --branch main",
		"bench --site SITE install-app memora_storage",
		"bench --site SITE enable-scheduler",
		"bench --site SITE execute memora_storage.demo.run",
		"./run-tests",
	):
		assert expected in commands, f"README.md does not name `{expected}`"
	assert re.search(r"^\./run-tests\s*$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)


# Commands


def segments(line: str) -> list[list[str]]:
	"""The simple commands of a shell line (split at ;, &&, ||, |), without env assignments or sudo."""
	lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
	lexer.whitespace_split = True
	lexer.commenters = "#"
	try:
		tokens = list(lexer)
	except ValueError:  # unbalanced quotes: prose in backticks, not a command
		return []
	found, current = [], []
	for token in [*tokens, ";"]:
		if token and set(token) <= set(";&|"):
			while current and (
				re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]) or current[0] == "sudo"
			):
				current.pop(0)
			if current:
				found.append(current)
			current = []
		else:
			current.append(token)
	return found


def all_commands(program: str) -> list[tuple[str, list[str]]]:
	"""(document, arguments) of every command running `program` in README.md and docs/."""
	return [
		(doc.name, command[1:])
		for doc in docs()
		for line in doc.command_lines()
		for command in segments(line)
		if command[0] == program
	]


def options_of(arguments: list[str]) -> list[str]:
	return [arg.split("=")[0] for arg in arguments if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", arg)]


@functools.cache
def bench_cli():
	from bench.commands import bench_command

	return bench_command


def click_options(command) -> set[str]:
	return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt[0] == "-"}


def check_bench(arguments: list[str]) -> list[str]:
	"""What is wrong with `bench ARGUMENTS`, if anything."""
	site, rest = None, list(arguments)
	while rest and rest[0].startswith("-"):
		option = rest.pop(0)
		if option not in FRAPPE_GLOBAL_OPTIONS:
			return [f"unknown global option {option}"]
		if FRAPPE_GLOBAL_OPTIONS[option]:
			site = rest.pop(0)
	if not rest:
		return []  # `bench` alone, named in prose
	name, rest = rest[0], rest[1:]
	cli = bench_cli()
	if name in cli.commands:
		if site:
			return [f"`{name}` is bench's own command: it takes no --site"]
		command = cli.commands[name]
		if hasattr(command, "commands") and rest and not rest[0].startswith("-"):
			if rest[0] not in command.commands:
				return [f"bench {name} has no subcommand {rest[0]}"]
			command, rest = command.commands[rest[0]], rest[1:]
		known = click_options(command)
	elif name in FRAPPE_V15_COMMANDS:
		known = FRAPPE_V15_COMMANDS[name]
	else:
		return [f"no bench command {name}"]
	problems = [f"bench {name} has no option {o}" for o in options_of(rest) if o not in known | {"--help"}]
	if name == "execute":
		problems += check_execute(rest)
	return problems


def check_execute(arguments: list[str]) -> list[str]:
	"""`bench execute METHOD [--args ...] [--kwargs ...]`: METHOD a function taking those arguments."""
	values, method = {}, None
	rest = list(arguments)
	while rest:
		token = rest.pop(0)
		if token in ("--args", "--kwargs"):
			values[token] = ast.literal_eval(rest.pop(0))
		elif not token.startswith("-"):
			method = token
	if not method:
		return []  # `bench execute`, named in prose
	node = resolve(method)
	if not isinstance(node, ast.FunctionDef):
		return [f"bench execute {method}: no such function"]
	names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
	problems = [
		f"{method} takes no argument {key!r}" for key in values.get("--kwargs", {}) if key not in names
	]
	if len(values.get("--args", ())) > len(node.args.args):
		problems.append(f"{method} takes {len(node.args.args)} positional arguments")
	return problems


def test_bench_commands_exist():
	found = all_commands("bench")
	assert any(args[:1] == ["get-app"] for _, args in found)  # the parsing sees the README's commands
	problems = [f"{doc}: bench {' '.join(args)}: {p}" for doc, args in found for p in check_bench(args)]
	assert problems == []


def test_check_bench_catches_mistakes():
	assert check_bench(["--site", "SITE", "execute", "memora_storage.demo.run"]) == []
	assert check_bench(["setup", "production", "USER"]) == []
	assert check_bench(["worker", "--queue", "short,default"]) == []
	assert check_bench(["--site", "SITE", "instal-app", "memora_storage"]) == ["no bench command instal-app"]
	assert check_bench(["worker", "--queues", "short"]) == ["bench worker has no option --queues"]
	assert check_bench(["setup", "prodution"]) == ["bench setup has no subcommand prodution"]
	assert check_bench(["--site", "SITE", "get-app", "URL"]) == [
		"`get-app` is bench's own command: it takes no --site"
	]
	assert check_bench(["--site", "SITE", "execute", "memora_storage.demo.runn"]) == [
		"bench execute memora_storage.demo.runn: no such function"
	]
	assert check_bench(
		["--site", "SITE", "execute", "memora_storage.api.rollback", "--kwargs", "{'pth': 'units/U.json'}"]
	) == ["memora_storage.api.rollback takes no argument 'pth'"]
	assert check_bench(
		["--site", "SITE", "execute", "memora_storage.api.rollback", "--args", "['a', 'b']"]
	) == ["memora_storage.api.rollback takes 1 positional arguments"]


def test_frappe_commands_match_the_bench():
	"""The list above against the Frappe of the bench in MEMORA_BENCH (.ci/run names one where it has it)."""
	bench = os.environ.get("MEMORA_BENCH")
	source = Path(bench or "/nonexistent") / "apps" / "frappe" / "frappe"
	if not bench or not (source / "commands").is_dir():
		pytest.skip("MEMORA_BENCH names no bench with Frappe's source: Frappe's commands not compared")
	version = re.search(r'^__version__ = "([^"]+)"', (source / "__init__.py").read_text(), re.MULTILINE)
	if not (version and version.group(1).startswith("15.")):
		pytest.skip(f"the bench in MEMORA_BENCH has Frappe {version and version.group(1)}, not v15")
	commands = frappe_commands(source / "commands")
	for name, options in FRAPPE_V15_COMMANDS.items():
		assert name in commands, f"Frappe {version.group(1)} has no command {name}"
		assert options <= commands[name], f"{name}: {options - commands[name]}"


def frappe_commands(folder: Path) -> dict[str, set[str]]:
	"""Command name → option strings, from the click decorators of Frappe's command modules."""
	commands = {}
	for module in folder.glob("*.py"):
		for node in ast.walk(ast.parse(module.read_text())):
			if not isinstance(node, ast.FunctionDef):
				continue
			name, options = None, set()
			for decorator in node.decorator_list:
				if not isinstance(decorator, ast.Call):
					continue
				called = ast.unparse(decorator.func)
				strings = [
					a.value
					for a in decorator.args
					if isinstance(a, ast.Constant) and isinstance(a.value, str)
				]
				if called == "click.command":
					name = strings[0] if strings else node.name.replace("_", "-")
				elif called == "click.option":
					options |= {part for s in strings for part in s.split("/") if part.startswith("-")}
			if name:
				commands[name] = options
	return commands


def test_run_tests_commands():
	found = all_commands("./run-tests")
	assert found
	script = ROOT / "run-tests"
	assert os.access(script, os.X_OK)
	for doc, args in found:
		if args[:1] == ["--setup"]:
			assert '"${1:-}" = --setup' in script.read_text(), f"{doc}: ./run-tests --setup"


@functools.cache
def help_options(module: str) -> frozenset[str]:
	"""The options `python -m MODULE --help` lists (benchmarks re-runs itself in .venv if needed)."""
	result = subprocess.run(
		[sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
	)
	assert result.returncode == 0, f"python -m {module} --help: {result.stderr[-2000:]}"
	return frozenset(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", result.stdout))


def test_python_module_commands():
	found = [
		(doc, args)
		for program in ("python", "python3", ".venv/bin/python")
		for doc, args in all_commands(program)
		if args[:1] == ["-m"]
	]
	assert any(args[1:2] == ["benchmarks"] for _, args in found)
	for doc, args in found:
		module, rest = args[1], args[2:]
		assert module.split(".")[0] == "benchmarks", f"{doc}: python -m {module}"
		assert (ROOT / (module.replace(".", "/") + ".py")).is_file() or (
			ROOT / module.replace(".", "/") / "__main__.py"
		).is_file(), f"{doc}: no module {module}"
		unknown = set(options_of(rest)) - help_options(module)
		assert not unknown, f"{doc}: python -m {module} has no option {unknown}"
		if "--only" in rest:
			for name in rest[rest.index("--only") + 1].split(","):
				stem = name if name.startswith("bench_") else f"bench_{name}"
				assert (ROOT / "benchmarks" / f"{stem}.py").is_file(), f"{doc}: --only {name}"


def test_uv_compile_command_is_the_one_in_test_in():
	header = (ROOT / "requirements" / "test.in").read_text()
	found = [" ".join(["uv", *args]) for _, args in all_commands("uv")]
	assert found
	for command in found:
		assert command in header, command


def test_curl_examples_call_guest_endpoints():
	"""The frontend's curl examples call methods a guest may call, with the HTTP method they allow."""
	found = [(doc, args) for doc, args in all_commands("curl") if any("/api/method/" in a for a in args)]
	assert found
	for doc, args in found:
		url = next(a for a in args if "/api/method/" in a)
		method = re.search(r"/api/method/([\w.]+)", url).group(1)
		node = resolve(method)
		assert isinstance(node, ast.FunctionDef), f"{doc}: {method}"
		whitelist = next(
			(
				d
				for d in node.decorator_list
				if isinstance(d, ast.Call) and ast.unparse(d.func) == "frappe.whitelist"
			),
			None,
		)
		assert whitelist is not None, f"{doc}: {method} is not whitelisted"
		keywords = {k.arg: ast.literal_eval(k.value) for k in whitelist.keywords}
		assert keywords.get("allow_guest"), f"{doc}: {method} needs a login"
		http = "POST" if "-X" in args and args[args.index("-X") + 1] == "POST" else "GET"
		assert http in keywords.get("methods", ["GET", "POST"]), f"{doc}: {method} refuses {http}"


# Dotted paths


DOTTED = re.compile(r"(?<![\w-])memora_storage(?:\.[A-Za-z_]\w*)+")


def test_dotted_paths_resolve():
	found = {(doc.name, m.group()) for doc in docs() for m in DOTTED.finditer(doc.text)}
	assert ("README.md", "memora_storage.demo.run") in found
	missing = sorted(f"{doc}: {dotted}" for doc, dotted in found if resolve(dotted) is None)
	assert missing == []


def test_python_examples_import_what_exists():
	for doc in docs():
		for language, body in doc.blocks:
			if language != "python":
				continue
			for node in ast.walk(ast.parse(body)):
				if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memora_storage"):
					for alias in node.names:
						assert resolve(f"{node.module}.{alias.name}"), (
							f"{doc.name}: {node.module}.{alias.name}"
						)


def test_resolve():
	assert isinstance(resolve("memora_storage.api.get_content_url"), ast.FunctionDef)
	assert isinstance(resolve("memora_storage.utils.resolver"), ast.Module)
	assert resolve("memora_storage.api.no_such_function") is None
	assert resolve("memora_storage.no_such_module") is None


# Files and links


def test_repository_paths_in_code_spans_exist():
	"""`tests/test_docs.py`, `benchmarks/bench_*.py`: paths into this checkout that name files."""
	top = {entry.name for entry in ROOT.iterdir()}
	missing = []
	for doc in docs():
		for span in doc.spans():
			if " " in span or "/" not in span or span.split("/")[0] not in top:
				continue
			if not re.search(r"\.(py|md|txt|in|toml|json|yml|png)$", span):
				continue  # a folder, or not a file name
			if span.split("/")[0] == "docs" and span in WRITTEN_ELSEWHERE:
				continue
			if not list(ROOT.glob(span)):
				missing.append(f"{doc.name}: {span}")
	assert missing == []


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slugs(doc: Doc) -> set[str]:
	"""GitHub's anchors for the headings of a page."""
	seen: dict[str, int] = {}
	found = set()
	for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", doc.prose, re.MULTILINE):
		text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
		slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
		count = seen.get(slug, 0)
		seen[slug] = count + 1
		found.add(slug if not count else f"{slug}-{count}")
	return found


def test_relative_links_point_to_existing_files():
	broken = []
	for doc in docs():
		for target in LINK.findall(doc.prose):
			if re.match(r"[a-z][a-z0-9+.-]*:", target):
				continue  # https:, mailto:
			path, _, anchor = target.partition("#")
			file = (doc.path.parent / path).resolve() if path else doc.path
			name = file.relative_to(ROOT).as_posix() if file.is_relative_to(ROOT) else str(file)
			if not file.exists():
				if name not in WRITTEN_ELSEWHERE:
					broken.append(f"{doc.name}: {target} (no such file)")
				continue
			if anchor and file.suffix == ".md" and anchor not in slugs(read(file)):
				broken.append(f"{doc.name}: {target} (no such heading)")
	assert broken == []


def test_slugs_follow_github():
	doc = Doc(
		Path("x.md"),
		"",
		"## CloudFront origin failover (optional)\n### nginx, for local URLs\n## site_config keys\n## A\n## A\n",
		(),
	)
	assert slugs(doc) == {
		"cloudfront-origin-failover-optional",
		"nginx-for-local-urls",
		"site_config-keys",
		"a",
		"a-1",
	}


def test_requirement_numbers_are_explained():
	"""FR-, SC- and US- numbers come from a spec outside this repository: a page that uses them links
	to docs/requirements.md, which explains them."""
	found = [
		f"{doc.name}: {m.group()}"
		for doc in docs()
		if doc.name != "docs/requirements.md" and "requirements.md" not in LINK.sub(r"\1", doc.prose)
		for m in re.finditer(r"\b(?:FR|SC|US)-?\d+\b", doc.text)
	]
	assert found == []
