"""Run every benchmark in this folder and write the results table.

    python -m benchmarks [--quick] [--only serve,sync] [--bench /opt/bench --site memora.test]

Each `bench_*.py` runs in its own process and writes `results/NAME.json`; this collects them into
`results/RESULTS.md` (a table per benchmark, with the machine it ran on) and `results/results.json`.
`--quick` passes smaller sizes to the scripts that take them: for a smoke run, not for figures.

Scripts that import frappe run on a real site: with the bench's Python, from its `sites` folder, as
the bench's owner, against the memora_storage installed in that bench (`./run-tests` installs this
checkout there). Without a bench they are reported as skipped. A failed benchmark is reported and
the others still run; its table shows the last results it wrote, marked as such.
"""

import argparse
import datetime
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

from benchmarks.common import RESULTS_DIR, default_site, machine_info

HERE = Path(__file__).resolve().parent
# Smaller sizes per script for --quick; a script not listed runs with its defaults.
QUICK_ARGS = {
	"bench_write": ["--iterations", "50,50,5"],
	"bench_resolver": ["--calls", "100000", "--repeat", "2"],
	"bench_scan": ["--sizes", "10000", "--repeat", "2"],
	"bench_sync": ["--files", "1000", "--repeat", "1"],
	"bench_serve": ["--duration", "5", "--plans", "5", "--repeat", "1"],
	"bench_freshness": ["--flips", "10", "--calls", "5000"],
	"bench_outage_drill": ["--plans", "3", "--rounds", "4"],
}
TIMEOUT_S = 3600


def discover() -> list[str]:
	return sorted(path.stem for path in HERE.glob("bench_*.py"))


def needs_frappe(name: str) -> bool:
	return bool(
		re.search(r"^(import|from) frappe\b", (HERE / f"{name}.py").read_text(encoding="utf-8"), re.M)
	)


def default_bench() -> tuple[Path | None, str | None]:
	bench = Path(os.environ.get("MEMORA_BENCH") or "/opt/bench")
	if not (bench / "sites").is_dir():
		return None, None
	return bench, os.environ.get("MEMORA_SITE") or default_site(bench)


def run_core(name: str, extra: list[str]) -> tuple[str, str]:
	"""A script of the core: this Python, from the repository root."""
	command = [sys.executable, "-m", f"benchmarks.{name}", *extra]
	code = subprocess.run(command, cwd=HERE.parent, timeout=TIMEOUT_S).returncode
	return ("ok" if code == 0 else f"failed (exit {code})"), " ".join(["python", *command[1:]])


def run_on_site(name: str, extra: list[str], bench: Path | None, site: str | None) -> tuple[str, str]:
	"""A script that imports frappe: the bench's Python in its `sites` folder, as the bench's owner.

	It runs from a copy of this folder that the owner can write to; its result file is copied back.
	"""
	if not bench or not site:
		return "skipped: needs a Frappe bench (--bench, MEMORA_BENCH) and a site (--site, MEMORA_SITE)", ""
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
		command = [str(bench / "env" / "bin" / "python"), str(copy / f"{name}.py"), "--site", site, *extra]
		code = subprocess.run(
			command,
			cwd=bench / "sites",
			user=owner.pw_uid if os.geteuid() != owner.pw_uid else None,
			env={**os.environ, "HOME": owner.pw_dir, "USER": owner.pw_name, "LOGNAME": owner.pw_name},
			timeout=TIMEOUT_S,
		).returncode
		wrote = written.is_file()
		if wrote:
			RESULTS_DIR.mkdir(parents=True, exist_ok=True)
			shutil.copyfile(written, RESULTS_DIR / f"{name}.json")
	finally:
		shutil.rmtree(work, ignore_errors=True)
	status = "ok" if code == 0 and wrote else f"failed (exit {code})"
	shown = " ".join([f"{bench}/env/bin/python", f"benchmarks/{name}.py", "--site", site, *extra])
	return status, f"{shown} (as {owner.pw_name}, in {bench}/sites)"


def previous_runs() -> dict[str, dict]:
	"""The runs recorded by the last `python -m benchmarks`, by name."""
	try:
		runs = json.loads((RESULTS_DIR / "results.json").read_text(encoding="utf-8"))["runs"]
	except (OSError, ValueError, KeyError):
		return {}
	return {run["name"]: run for run in runs}


def summary(doc: dict | None) -> str:
	"""Whether the result met its goal, where it records one."""
	if not doc or not isinstance(doc.get("goal"), dict) or "met" not in doc["goal"]:
		return ""
	return "met" if doc["goal"]["met"] else "NOT met"


def report(runs: list[dict], invocation: str, quick: bool) -> str:
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
		"| benchmark | this run | seconds | goal | results from |",
		"| --- | --- | ---: | --- | --- |",
	]
	for run in runs:
		doc = run["result"]
		origin = ("this run" if run["fresh"] else f"earlier: {doc['when']}") if doc else "none"
		seconds = f"{run['seconds']:.0f}" if run["command"] else ""
		lines.append(f"| {run['name']} | {run['status']} | {seconds} | {summary(doc)} | {origin} |")
	for run in runs:
		doc = run["result"]
		source = (HERE / f"{run['name']}.py").read_text(encoding="utf-8")
		title = re.search(r'^"""(.*?)(?:\n\n|""")', source, re.S)
		lines += ["", f"## {run['name']}", ""]
		if title:
			lines += [" ".join(title.group(1).split()), ""]
		if run["command"]:
			lines += [f"Command: `{run['command']}`", ""]
		if doc and run.get("carried"):
			lines += [f"Not run this time: the results of an earlier run, {doc['when']}.", ""]
		elif doc and not run["fresh"]:
			lines += [f"This run: {run['status']}. Below: the results of {doc['when']}.", ""]
		lines.append(doc.get("table", "(no table)") if doc else f"No results ({run['status']}).")
	return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
	parser.add_argument(
		"--only", action="append", default=[], help="run only these (e.g. serve or bench_serve)"
	)
	parser.add_argument(
		"--bench", type=Path, help="bench for the Frappe benchmarks (default: MEMORA_BENCH or /opt/bench)"
	)
	parser.add_argument("--site", help="site of that bench (default: MEMORA_SITE or its default site)")
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
	bench, site = default_bench()
	bench, site = args.bench or bench, args.site or site

	previous = previous_runs()
	runs = []
	for name in names:
		result_file = RESULTS_DIR / f"{name}.json"
		result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else None
		if name not in wanted:
			# Left out by --only: the table keeps the run that wrote its current results, if known.
			before = previous.get(name)
			same = before and result and (before.get("result") or {}).get("when") == result.get("when")
			runs.append(
				{**before, "result": result, "fresh": False, "carried": True}
				if same
				else {
					"name": name,
					"status": "not run",
					"seconds": 0,
					"command": "",
					"fresh": False,
					"result": result,
				}
			)
			continue
		extra = QUICK_ARGS.get(name, []) if args.quick else []
		started, clock = time.time(), time.monotonic()
		print(f"\n=== {name} {' '.join(extra)} ===", flush=True)
		try:
			if needs_frappe(name):
				status, command = run_on_site(name, extra, bench, site)
			else:
				status, command = run_core(name, extra)
		except subprocess.TimeoutExpired:
			status, command = f"failed (over {TIMEOUT_S} s)", name
		print(f"=== {name}: {status} ===", flush=True)
		result = json.loads(result_file.read_text(encoding="utf-8")) if result_file.is_file() else None
		runs.append(
			{
				"name": name,
				"status": f"{status} (quick)" if args.quick and status == "ok" else status,
				"seconds": time.monotonic() - clock,
				"command": command,
				"fresh": result is not None and result_file.stat().st_mtime >= started,
				"result": result,
			}
		)

	RESULTS_DIR.mkdir(parents=True, exist_ok=True)
	invocation = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
	(RESULTS_DIR / "RESULTS.md").write_text(report(runs, invocation, args.quick), encoding="utf-8")
	combined = {"quick": args.quick, "machine": machine_info(), "runs": runs}
	(RESULTS_DIR / "results.json").write_text(
		json.dumps(combined, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
	)
	print(f"\nresults table: {RESULTS_DIR / 'RESULTS.md'}")
	for run in runs:
		print(f"  {run['name']:<18} {run['status']}")
	return 0 if not any(run["status"].startswith("failed") for run in runs) else 1


if __name__ == "__main__":
	sys.exit(main())
