"""What a dotted path or a test name of this checkout names, read from the source with `ast` (the
Frappe layer cannot be imported without Frappe): shared by the tests that check the docs."""

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def module_tree(path: Path) -> ast.Module:
	return ast.parse(path.read_text(encoding="utf-8"))


def top_level(body: list[ast.stmt]) -> dict[str, ast.AST]:
	"""Functions, classes, assigned and imported names defined directly in a module or class body."""
	names = {}
	for node in body:
		if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
			names[node.name] = node
		elif isinstance(node, ast.Assign):
			names |= {t.id: node for t in node.targets if isinstance(t, ast.Name)}
		elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
			names[node.target.id] = node
		elif isinstance(node, ast.Import | ast.ImportFrom):
			names |= {(a.asname or a.name).split(".")[0]: node for a in node.names}
	return names


def resolve(dotted: str) -> ast.AST | None:
	"""The module (ast.Module) or definition a dotted path of this checkout names, or None."""
	parts = dotted.split(".")
	for end in range(len(parts), 0, -1):
		base = ROOT.joinpath(*parts[:end])
		for path in (base.with_suffix(".py"), base / "__init__.py"):
			if path.is_file():
				node: ast.AST | None = module_tree(path)
				for name in parts[end:]:
					body = getattr(node, "body", None)
					node = top_level(body).get(name) if isinstance(body, list) else None
					if node is None:
						return None
				return node
	return None


def find_test(path: Path, name: str) -> bool:
	"""Whether `name` (`test_x`, or `TestCase.test_x`) is a test defined in the file at `path`."""
	owner, _, test = name.rpartition(".")
	body = module_tree(path).body
	if owner:
		case = top_level(body).get(owner)
		if not isinstance(case, ast.ClassDef):
			return False
		body = case.body
	return test.startswith("test_") and isinstance(
		top_level(body).get(test), ast.FunctionDef | ast.AsyncFunctionDef
	)
