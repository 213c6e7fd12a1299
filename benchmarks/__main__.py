"""Run every benchmark in this folder and write the results table.

    ./run-tests                  # once: creates .venv with what the benchmarks import
    .venv/bin/python -m benchmarks [--quick] [--only serve,sync] [--bench /opt/bench --site SITE]

Run from the checkout's root. With another Python that lacks the benchmarks' imports (psutil,
PyMySQL, moto...), this re-runs itself in .venv (or $MEMORA_VENV), creating it with
`./run-tests --setup` if needed.

Each `bench_*.py` runs in its own process and writes `results/NAME.json`; this collects them into
`results/RESULTS.md` (a table per benchmark, with the machine it ran on) and `results/results.json`.
`--quick` passes smaller sizes to the scripts that take them and writes everything to
`results/quick/` instead (gitignored): a smoke run, never figures to quote or commit.
A benchmark left out by `--only`, skipped or failed keeps its last results in the table, marked
stale with their date; only results written by this run count as ok or as a goal met.

The bench and site come from --bench/--site or MEMORA_BENCH/MEMORA_SITE, never from a guess, and are
passed to every script (those that use a site take them from there): without them, scripts that
import frappe are reported as skipped and bench_serve uses a temporary site folder. Scripts that
import frappe run on that site: with the bench's Python, from its `sites` folder, as the bench's
owner, against the memora_storage installed in that bench (`./run-tests` installs this checkout
there).
"""

import argparse
import datetime
import importlib.util
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Smaller sizes per script for --quick; a script not listed runs with its defaults.
QUICK_ARGS = {
	"bench_publish": ["--quick"],
	"bench_import": ["--quick"],
	"bench_site_resolver": ["--quick"],
	"bench_write": ["--iterations", "50,50,5"],
	"bench_resolver": ["--calls", "100000", "--repeat", "2"],
	"bench_scan": ["--sizes", "10000", "--repeat", "2"],
	"bench_sync": ["--files", "1000", "--repeat", "1"],
	"bench_serve": ["--duration", "5", "--plans", "5", "--repeat", "1"],
	"bench_freshness": ["--flips", "10", "--calls", "5000"],
	"bench_outage_drill": ["--plans", "3", "--rounds", "4"],
	"bench_relink": ["--quick"],
	"bench_failover": ["--quick"],
	"bench_save_cost": ["--quick"],
	"bench_edge": ["--quick"],
}
TIMEOUT_S = 3600
# What the scripts run by this Python import (the `benchmarks` extra of pyproject.toml and the app's
# own dependencies); those that import frappe run in the bench's environment instead.
IMPORTS = ("psutil", "boto3", "filelock", "moto", "werkzeug", "pymysql")


def ensure_environment(argv: list[str]) -> None:
	"""Re-run in the checkout's virtualenv when this Python lacks the benchmarks' imports.

	First the existing .venv as it is; if that lacks them too, `./run-tests --setup` installs them
	(creating .venv if needed) and this runs once more. MEMORA_BENCHMARKS_ENV says which step ran.
	"""
	missing = [name for name in IMPORTS if importlib.util.find_spec(name) is None]
	step = os.environ.pop("MEMORA_BENCHMARKS_ENV", "")
	if not missing:
		return
	venv = Path(os.environ.get("MEMORA_VENV") or ROOT / ".venv")
	python = venv / "bin" / "python"
	if step == "set up":
		sys.exit(f"{sys.executable} still lacks {', '.join(missing)} after {ROOT}/run-tests --setup")
	in_venv = Path(sys.prefix).resolve() == venv.resolve()
	if python.is_file() and not in_venv and not step:
		print(f"{sys.executable} lacks {', '.join(missing)}: running in {venv}", file=sys.stderr)
		step = "venv"
	else:
		print(
			f"{sys.executable} lacks {', '.join(missing)}: installing into {venv} ({ROOT}/run-tests --setup)",
			file=sys.stderr,
		)
		subprocess.run([str(ROOT / "run-tests"), "--setup"], check=True)
		step = "set up"
	sys.stdout.flush()
	os.chdir(ROOT)  # `-m benchmarks` is found from the checkout's root
	os.execve(python, [str(python), "-m", "benchmarks", *argv], {**os.environ, "MEMORA_BENCHMARKS_ENV": step})


def discover() -> list[str]:
	return sorted(path.stem for path in HERE.glob("bench_*.py"))


def needs_frappe(name: str) -> bool:
	return bool(
		re.search(r"^(import|from) frappe\b", (HERE / f"{name}.py").read_text(encoding="utf-8"), re.M)
	)


def child_env(results: Path, bench: Path | None, site: str | None) -> dict[str, str]:
	"""The environment of a script: where its results go, and the bench and site or none at all."""
	env = {key: value for key, value in os.environ.items() if key not in ("MEMORA_BENCH", "MEMORA_SITE")}
	env["MEMORA_RESULTS_DIR"] = str(results)
	if bench and site:
		env.update(MEMORA_BENCH=str(bench), MEMORA_SITE=site)
	return env


def run_core(name: str, extra: list[str], env: dict[str, str]) -> tuple[int, str]:
	"""A script of the core: this Python, from the repository root."""
	command = [sys.executable, "-m", f"benchmarks.{name}", *extra]
	code = subprocess.run(command, cwd=ROOT, env=env, timeout=TIMEOUT_S).returncode
	return code, " ".join(["python", *command[1:]])


def run_on_site(
	name: str, extra: list[str], env: dict[str, str], results: Path, bench: Path, site: str
) -> tuple[int | str, str]:
	"""A script that imports frappe: the bench's Python in its `sites` folder, as the bench's owner.

	It runs from a copy of this folder that the owner can write to; its result file is copied back.
	"""
	owner = pwd.getpwuid(bench.stat().st_uid)
	if os.geteuid() not in (0, owner.pw_uid):
		return f"skipped: the bench belongs to {owner.pw_name}; run as {owner.pw_name} or root", ""
	work = Path(tempfile.mkdtemp(prefix="memora-benchmarks-"))
	copy = work / "benchmarks"
	written = copy / "results" / f"{name}.json"
	try:
		shutil.copytree(HERE, copy, ignore=shutil.ignore_patterns("results", "__pycache__"))
		for path in [work, *work.rglob("*")]:
			os.chown(path, owner.pw_uid, owner.pw_gid)
		args = ["--bench", str(bench), "--site", site, *extra]
		command = [str(bench / "env" / "bin" / "python"), str(copy / f"{name}.py"), *args]
		code = subprocess.run(
			command,
			cwd=bench / "sites",
			user=owner.pw_uid if os.geteuid() != owner.pw_uid else None,
			env={
				**env,
				"MEMORA_RESULTS_DIR": str(written.parent),
				"HOME": owner.pw_dir,
				"USER": owner.pw_name,
				"LOGNAME": owner.pw_name,
			},
			timeout=TIMEOUT_S,
		).returncode
		if written.is_file():
			results.mkdir(parents=True, exist_ok=True)
			shutil.copyfile(written, results / f"{name}.json")
	finally:
		shutil.rmtree(work, ignore_errors=True)
	shown = " ".join([f"{bench}/env/bin/python", f"benchmarks/{name}.py", *args])
	return code, f"{shown} (as {owner.pw_name}, in {bench}/sites)"


def previous_runs(results: Path) -> dict[str, dict]:
	"""The runs recorded by the last `python -m benchmarks` into this folder, by name."""
	try:
		runs = json.loads((results / "results.json").read_text(encoding="utf-8"))["runs"]
	except (OSError, ValueError, KeyError):
		return {}
	return {run["name"]: run for run in runs}


def goal(doc: dict | None) -> str:
	"""Whether the result met its goal, where it records one."""
	if not doc or not isinstance(doc.get("goal"), dict) or "met" not in doc["goal"]:
		return ""
	return "met" if doc["goal"]["met"] else "NOT met"


def report(runs: list[dict], invocation: str, quick: bool) -> str:
	from benchmarks.common import machine_info

	machine = machine_info()
	when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
	lines = [
		"# Benchmark results",
		"",
		f"Written by `{invocation}` on {when}"
		+ (" (quick sizes: a smoke run, not figures to quote)" if quick else "")
		+ ".",
		"",
		f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, {machine['memory_gb']} GB RAM, "
		f"{machine['platform']}, Python {machine['python']}.",
		"",
		"Only results written by this run count as ok or as a goal met; a STALE row shows the last",
		"results of a benchmark that did not run or did not finish this time, with their date.",
		"",
		"| benchmark | this run | seconds | goal | results from |",
		"| --- | --- | ---: | --- | --- |",
	]
	for run in runs:
		doc = run["result"]
		origin = ("this run" if run["fresh"] else f"STALE: {doc['when']}") if doc else "none"
		seconds = f"{run['seconds']:.0f}" if run["command"] else ""
		# Quick sizes are too small for a verdict: the same commit met and missed goals run to run.
		shown_goal = ("not judged (quick)" if quick else goal(doc)) if run["fresh"] and goal(doc) else ""
		lines.append(f"| {run['name']} | {run['status']} | {seconds} | {shown_goal} | {origin} |")
	for run in runs:
		doc = run["result"]
		source = (HERE / f"{run['name']}.py").read_text(encoding="utf-8")
		title = re.search(r'^"""(.*?)(?:\n\n|""")', source, re.S)
		lines += ["", f"## {run['name']}", ""]
		if title:
			lines += [" ".join(title.group(1).split()), ""]
		if run["command"]:
			lines += [f"Command: `{run['command']}`", ""]
		if doc and not run["fresh"]:
			then = f" by `{run['last_command']}`" if run.get("last_command") else ""
			then += f", goal then: {goal(doc)}" if goal(doc) else ""
			lines += [f"**Stale.** This run: {run['status']}. Below: the results of {doc['when']}{then}.", ""]
		lines.append(doc.get("table", "(no table)") if doc else f"No results ({run['status']}).")
	return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
	parser = argparse.ArgumentParser(
		prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument(
		"--quick", action="store_true", help="smaller sizes, for a smoke run; results in results/quick/"
	)
	parser.add_argument(
		"--only", action="append", default=[], help="run only these (e.g. serve or bench_serve)"
	)
	# As benchmarks.common.add_bench_arguments, which needs psutil: --help works with any Python.
	parser.add_argument(
		"--bench",
		type=Path,
		default=os.environ.get("MEMORA_BENCH") or None,
		help="Frappe bench for the benchmarks that use one (default: MEMORA_BENCH; none when unset)",
	)
	parser.add_argument(
		"--site",
		default=os.environ.get("MEMORA_SITE") or None,
		help="site of that bench, which they write to (default: MEMORA_SITE)",
	)
	return parser


def main(argv: list[str] | None = None) -> int:
	argv = sys.argv[1:] if argv is None else argv
	parser = build_parser()
	args = parser.parse_args(argv)
	names = discover()
	wanted = set(names)
	if args.only:
		wanted = {
			n if n.startswith("bench_") else f"bench_{n}" for item in args.only for n in item.split(",")
		}
		unknown = wanted - set(names)
		if unknown:
			parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(names)})")
	ensure_environment(argv)
	from benchmarks.common import RESULTS_DIR, bench_and_site, machine_info

	bench, site = bench_and_site(parser, args)
	results = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
	env = child_env(results, bench, site)
	previous = previous_runs(results)
	runs = []
	for name in names:
		result_file = results / f"{name}.json"
		result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else None
		before = previous.get(name) or {}
		# The command that wrote the results kept, if the last run of this folder wrote them.
		last_command = (
			before.get("command")
			if result and (before.get("result") or {}).get("when") == result.get("when")
			else before.get("last_command")
		)
		if name not in wanted:
			runs.append(
				{
					"name": name,
					"status": "not run",
					"seconds": 0,
					"command": "",
					"fresh": False,
					"result": result,
					"last_command": last_command,
				}
			)
			continue
		extra = QUICK_ARGS.get(name, []) if args.quick else []
		started, clock = time.time(), time.monotonic()
		print(f"\n=== {name} {' '.join(extra)} ===", flush=True)
		code: int | str
		try:
			if not needs_frappe(name):
				code, command = run_core(name, extra, env)
			elif bench and site:
				code, command = run_on_site(name, extra, env, results, bench, site)
			else:
				code, command = (
					"skipped: needs a Frappe bench and site (--bench/--site or MEMORA_BENCH/MEMORA_SITE)",
					"",
				)
		except subprocess.TimeoutExpired:
			code, command = f"failed (over {TIMEOUT_S} s)", name
		result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else None
		fresh = result is not None and result_file.stat().st_mtime >= started
		if isinstance(code, str):
			status = code
		elif code:
			status = f"failed (exit {code})"
		else:
			status = ("ok (quick)" if args.quick else "ok") if fresh else "failed (wrote no results)"
		print(f"=== {name}: {status} ===", flush=True)
		runs.append(
			{
				"name": name,
				"status": status,
				"seconds": time.monotonic() - clock,
				"command": command,
				"fresh": fresh,
				"result": result,
				"last_command": command if fresh else last_command,
			}
		)

	results.mkdir(parents=True, exist_ok=True)
	invocation = " ".join(["python -m benchmarks", *argv])
	(results / "RESULTS.md").write_text(report(runs, invocation, args.quick), encoding="utf-8")
	combined = {"quick": args.quick, "machine": machine_info(), "runs": runs}
	(results / "results.json").write_text(
		json.dumps(combined, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
	)
	print(f"\nresults table: {results / 'RESULTS.md'}")
	for run in runs:
		stale = f" (results STALE: {run['result']['when']})" if run["result"] and not run["fresh"] else ""
		print(f"  {run['name']:<18} {run['status']}{stale}")
	return 0 if not any(run["status"].startswith("failed") for run in runs) else 1


if __name__ == "__main__":
	sys.exit(main())
