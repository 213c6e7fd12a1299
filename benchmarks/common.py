"""Shared helpers for the benchmark scripts: what machine ran them, percentiles, where results go, and
which bench and site they may use.

A figure without its machine and filesystem means little, so every result file records both.
Results go to benchmarks/results/, or to MEMORA_RESULTS_DIR when set (`python -m benchmarks --quick`
points it at benchmarks/results/quick/, so a smoke run never overwrites the committed figures).
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(os.environ.get("MEMORA_RESULTS_DIR") or Path(__file__).resolve().parent / "results")


def _cpu_model() -> str:
	try:
		with open("/proc/cpuinfo", encoding="utf-8") as f:
			for line in f:
				if line.startswith("model name"):
					return line.split(":", 1)[1].strip()
	except OSError:
		pass
	return platform.processor() or "unknown"


def filesystem_of(path: str | os.PathLike) -> dict[str, str]:
	"""Device, mount point and type of the filesystem holding `path` (fsync cost depends on it)."""
	real = os.path.realpath(path)
	best = None
	for part in psutil.disk_partitions(all=True):
		if (real == part.mountpoint or real.startswith(part.mountpoint.rstrip("/") + "/")) and (
			best is None or len(part.mountpoint) > len(best.mountpoint)
		):
			best = part
	if best is None:
		return {"path": real, "device": "unknown", "mountpoint": "unknown", "fstype": "unknown"}
	return {"path": real, "device": best.device, "mountpoint": best.mountpoint, "fstype": best.fstype}


def machine_info() -> dict[str, Any]:
	"""The facts a reader needs to compare two runs of a benchmark."""
	return {
		"python": sys.version.split()[0],
		"implementation": platform.python_implementation(),
		"platform": platform.platform(),
		"kernel": platform.release(),
		"cpu": _cpu_model(),
		"cpu_count": os.cpu_count(),
		"memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
		"hostname": platform.node(),
	}


def percentile(values: Sequence[float], p: float) -> float:
	"""The p-th percentile (0-100) with linear interpolation between closest ranks, as numpy's default."""
	if not values:
		raise ValueError("percentile of no values")
	if not 0 <= p <= 100:
		raise ValueError(f"percentile must be within 0..100, got {p}")
	ordered = sorted(values)
	rank = (len(ordered) - 1) * p / 100
	low, high = math.floor(rank), math.ceil(rank)
	return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
	"""A GitHub-flavoured markdown table; numbers right-aligned."""
	cells = [[str(cell) for cell in row] for row in rows]
	widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
	numeric = [all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))]

	def line(values: Sequence[str]) -> str:
		padded = [
			v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
		]
		return "| " + " | ".join(padded) + " |"

	rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
	return "\n".join([line([str(h) for h in headers]), line(rule), *(line(row) for row in cells)])


def profile_table(title: str, profile: dict[str, Any], rows: int = 15) -> str:
	"""A cProfile summary (its `seconds` and `top_cumulative` functions) as a titled markdown table."""
	return f"{title}: {profile['seconds']:.1f} s\n\n" + markdown_table(
		["function (cumulative)", "calls", "cum s", "self s"],
		[
			[t["function"], t["calls"], round(t["cumtime"], 2), round(t["tottime"], 2)]
			for t in profile["top_cumulative"][:rows]
		],
	)


class PySpy:
	"""py-spy sampling a process and its children (a worker's forked jobs) while the block runs, for
	work that happens in another process, where cProfile cannot follow it. Idle frames (waiting on a
	socket, such as a query's answer) are kept: they are part of the job's time. `summary()` names the
	functions with the most samples, by themselves and with what they called."""

	RATE = 200  # samples per second

	def __init__(self, pid: int, output: str | os.PathLike):
		self.pid = pid
		self.output = Path(output)
		self.process: subprocess.Popen | None = None

	def __enter__(self) -> "PySpy":
		program = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
		self.process = subprocess.Popen(
			[
				*(program, "record", "--pid", str(self.pid), "--subprocesses", "--idle", "--nonblocking"),
				*("--rate", str(self.RATE), "--format", "raw", "--output", str(self.output)),
			],
			stdout=subprocess.DEVNULL,
			stderr=subprocess.PIPE,
		)
		return self

	def __exit__(self, exc_type, *exc) -> None:
		self.process.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
		_, stderr = self.process.communicate(timeout=60)
		if exc_type is None and not self.output.exists():  # never hide the block's own error
			raise RuntimeError(f"py-spy wrote nothing: {stderr.decode(errors='replace').strip()}")

	def summary(self, under: str = "", rows: int = 20) -> dict[str, Any]:
		"""Seconds by function, self and inclusive, over the stacks that pass through `under` (a
		function name such as 'execute_job', from which the stacks are read; all stacks when empty)."""
		own: Counter = Counter()
		inclusive: Counter = Counter()
		total = 0
		for line in self.output.read_text(errors="replace").splitlines():
			stack, _, count = line.rpartition(" ")
			# The first frame names the process ("process PID:COMMAND"): a job's pid differs every run.
			frames = [frame.strip() for frame in stack.split(";")[1:]]
			if not frames or not count.isdigit():
				continue
			if under:
				start = next((i for i, frame in enumerate(frames) if frame.startswith(under + " ")), None)
				if start is None:
					continue
				frames = frames[start:]  # what ran it (the worker's loop) is the same in every stack
			samples = int(count)
			total += samples
			own[frames[-1]] += samples
			for frame in set(frames):
				inclusive[frame] += samples
		seconds = lambda samples: round(samples / self.RATE, 3)  # noqa: E731
		return {
			"seconds": seconds(total),
			"top_self": [[frame, seconds(n)] for frame, n in own.most_common(rows)],
			"top_inclusive": [[frame, seconds(n)] for frame, n in inclusive.most_common(rows * 2)],
		}


def _is_number(value: Any) -> bool:
	return isinstance(value, int | float) and not isinstance(value, bool)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
	"""--bench and --site, defaulting to MEMORA_BENCH and MEMORA_SITE: the same in every script."""
	parser.add_argument(
		"--bench",
		type=Path,
		default=os.environ.get("MEMORA_BENCH") or None,
		help="Frappe bench folder (default: MEMORA_BENCH; none when unset)",
	)
	parser.add_argument(
		"--site",
		default=os.environ.get("MEMORA_SITE") or None,
		help="site of that bench (default: MEMORA_SITE)",
	)


def bench_and_site(
	parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[Path | None, str | None]:
	"""The bench and site named by --bench/--site (or MEMORA_BENCH/MEMORA_SITE): both or neither.

	Never a guess (no /opt/bench, no default site): a benchmark writes only into a site it was
	pointed at, since another one may be someone's working site.
	"""
	if not args.bench and not args.site:
		return None, None
	if not args.bench or not args.site:
		parser.error("--bench (MEMORA_BENCH) and --site (MEMORA_SITE) go together: name both or neither")
	bench = Path(args.bench).resolve()
	if not (bench / "sites").is_dir():
		parser.error(f"{bench} is not a Frappe bench (no sites folder)")
	if not (bench / "sites" / args.site / "site_config.json").is_file():
		parser.error(f"no site {args.site!r} in {bench}/sites")
	return bench, args.site


def open_site(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, str]:
	"""The bench and site of a publishing benchmark (rclone is its anchor), connected as Administrator
	with the demo's content DocTypes. A stop asked for (SIGTERM, SIGINT) raises, so the caller's
	cleanup still deletes what it made and restores the settings."""
	import shutil
	import signal

	import frappe

	bench, site = bench_and_site(parser, args)
	if not bench:
		parser.error("needs --bench and --site (or MEMORA_BENCH and MEMORA_SITE)")
	if not shutil.which("rclone"):
		parser.exit(2, "rclone is not installed (Debian: apt-get install rclone)\n")
	signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
	signal.signal(signal.SIGINT, signal.default_int_handler)
	frappe.init(site=site, sites_path=str(bench / "sites"))
	frappe.connect()
	frappe.set_user("Administrator")
	from memora_storage.demo import ensure_content_doctypes

	ensure_content_doctypes()
	return bench, site


def write_results(name: str, results: dict[str, Any], table: str | None = None) -> Path:
	"""Save `results` with the machine info to RESULTS_DIR/<name>.json; print the table if given."""
	RESULTS_DIR.mkdir(parents=True, exist_ok=True)
	out = RESULTS_DIR / f"{name}.json"
	doc = {
		"benchmark": name,
		"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
		"machine": machine_info(),
		**results,
	}
	if table is not None:
		doc["table"] = table
	out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
	if table is not None:
		print(table)
	print(f"\nresults written to {out}")
	return out


def moto_server_command(python: str | None = None) -> tuple[list[str], dict[str, str]]:
	"""The command (and extra environment) that starts moto's S3 server, for a script run on a site.

	Such a script runs with the bench's Python, where moto does not fit (it needs a newer Werkzeug
	than Frappe pins), and as the bench's owner, who may not be allowed to run the checkout's
	virtualenv Python (a virtualenv made from a Python under /root links there). So, in order: the
	Python named by `python` or MEMORA_MOTO_PYTHON; else the Python of the first virtualenv holding
	moto (MEMORA_VENV, the .venv of the checkout beside this file, $PWD/.venv: the runner's copy of
	this folder has none beside it) if this user can run it; else this interpreter's base Python with
	`-S` and that virtualenv's site-packages on PYTHONPATH, when both are the same Python version.
	"""
	explicit = python or os.environ.get("MEMORA_MOTO_PYTHON")
	if explicit:
		return [explicit, "-m", "moto.server"], {}
	version = f"python{sys.version_info.major}.{sys.version_info.minor}"
	candidates = [
		os.environ.get("MEMORA_VENV"),
		str(Path(__file__).resolve().parent.parent / ".venv"),
		os.path.join(os.environ["PWD"], ".venv") if os.environ.get("PWD") else None,
	]
	tried = []
	for venv in dict.fromkeys(filter(None, candidates)):
		site_packages = Path(venv) / "lib" / version / "site-packages"
		interpreter = Path(venv) / "bin" / "python"
		tried.append(venv)
		if not (site_packages / "moto" / "__init__.py").is_file():
			continue
		if os.access(os.path.realpath(interpreter), os.X_OK):
			return [str(interpreter), "-m", "moto.server"], {}
		base = getattr(sys, "_base_executable", None) or sys.executable
		return [base, "-S", "-m", "moto.server"], {"PYTHONPATH": str(site_packages)}
	raise RuntimeError(
		f"no virtualenv with moto for {version} among {', '.join(tried) or 'none'}: "
		"pass --moto-python or set MEMORA_MOTO_PYTHON (or MEMORA_VENV)"
	)
