"""Shared helpers for the benchmark scripts: what machine ran them, percentiles, and where results go.

A figure without its machine and filesystem means little, so every result file records both.
"""

import datetime
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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


def _is_number(value: Any) -> bool:
	return isinstance(value, int | float) and not isinstance(value, bool)


def default_site(bench: str | os.PathLike) -> str | None:
	"""The site a bench's commands use without --site: `bench use`'s choice, else its only site."""
	sites = Path(bench) / "sites"
	try:
		config = json.loads((sites / "common_site_config.json").read_text(encoding="utf-8"))
	except (OSError, ValueError):
		config = {}
	if config.get("default_site"):
		return config["default_site"]
	current = sites / "currentsite.txt"
	if current.is_file() and current.read_text(encoding="utf-8").strip():
		return current.read_text(encoding="utf-8").strip()
	found = [path.parent.name for path in sites.glob("*/site_config.json")]
	return found[0] if len(found) == 1 else None


def write_results(name: str, results: dict[str, Any], table: str | None = None) -> Path:
	"""Save `results` with the machine info to benchmarks/results/<name>.json; print the table if given."""
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
