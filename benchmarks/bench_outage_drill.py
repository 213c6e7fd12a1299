"""Outage drill, narrated and timed (SC-003, SC-004, SC-005): content uploaded to a real S3 endpoint,
the endpoint killed, content changing meanwhile, every file served by nginx from the local disk with
its exact bytes, the endpoint back, verification's differences uploaded or deleted from the disk, the
CDN verified equal to the disk.

The steps are those tests/test_outage_drill.py asserts (tests/outage_drill.py): a moto server killed
with SIGKILL and restarted with its objects, nginx with bench's static-file rule, files rendered as
the app renders them, uploads and deletes through the app's Uploader and CdnBucket. The app's queue is
not part of it (the site drill, memora_storage/tests/test_outage_drill.py, covers it). Each step prints what happened and its checks; the exit code is 1 if a check
fails. Everything runs on 127.0.0.1 in a temporary folder, removed at the end.

    python -m benchmarks.bench_outage_drill [--plans 10] [--rounds 5]

Needs nginx (Debian: apt-get install nginx).
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
	sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from outage_drill import SITE, CrashableEndpoint, Drill

from benchmarks.common import RESULTS_DIR, markdown_table, write_results
from memora_storage.tests.nginx import NOT_INSTALLED, Nginx, find_nginx
from memora_storage.utils.s3 import CdnErrorKind


class Narrator:
	"""Prints each step and its checks, and keeps them for the results table."""

	def __init__(self) -> None:
		self.rows: list[list] = []
		self.failed: list[str] = []
		self._checks: list[bool] = []

	def check(self, what: str, ok: bool) -> None:
		print(f"     [{'ok' if ok else 'FAILED'}] {what}")
		self._checks.append(ok)
		if not ok:
			self.failed.append(what)

	def step(self, title: str, story: str, seconds: float) -> None:
		print(f"\n{title} ({seconds:.1f} s)\n   {story}")
		self.rows.append([title, story, round(seconds, 1)])

	def close_step(self) -> None:
		self.rows[-1].append(f"{sum(self._checks)}/{len(self._checks)}")
		self._checks = []


def run(drill: Drill, say: Narrator) -> None:
	normal = drill.normal()
	report = normal["report"]
	say.step(
		"1. normal operation",
		f"{normal['documents']:,} documents written as {normal['written']:,} files and uploaded; "
		f"the CDN holds {report.matched:,} identical copies",
		drill.seconds["normal"],
	)
	say.check(
		"every file uploaded, none failed", normal["synced"] == normal["documents"] and not normal["failed"]
	)
	say.check(
		"verify: every local file matches its CDN object",
		report.clean and report.matched == report.local_count,
	)
	say.close_step()

	outage = drill.outage()
	attempted = sum(r["attempted"] for r in outage["rounds"])
	failed = sum(r["failed"] for r in outage["rounds"])
	say.step(
		"2. CDN endpoint killed",
		f"{len(outage['rounds'])} rounds of new, updated and deleted content"
		f"{' (one whole plan deleted)' if len(outage['rounds']) > 3 else ''}; "
		f"{failed} of {attempted} uploads and deletes failed; the CDN kept what it had",
		drill.seconds["outage"],
	)
	say.check(
		"the endpoint is unreachable", getattr(outage["probe"], "kind", None) == CdnErrorKind.UNREACHABLE
	)
	say.check(
		"every attempt failed, none was reported as sent",
		failed == attempted and outage["synced"] == drill.before_outage,
	)
	say.close_step()

	fallback = drill.fallback()
	say.step(
		"3. local fallback mode",
		f"{fallback['relinked']} files that list links rendered again with local URLs; "
		f"{fallback['live']:,} live files on disk",
		drill.seconds["fallback"],
	)
	say.check(
		"the disk holds exactly the live content",
		not fallback["on_disk_not_live"] and not fallback["removed_but_live"],
	)
	say.check("every upload of a rendered file failed", fallback["failed"] == fallback["relinked"] > 0)
	say.close_step()

	served = drill.serve()
	say.step(
		"4. served by nginx",
		f"{served['served']:,} of {fallback['live']:,} files answered 200 with their exact bytes; "
		f"{served['gone']} deleted paths answered 404; {served['links_followed']:,} links followed from the manifests",
		drill.seconds["serve"],
	)
	say.check(
		"every live file: 200, application/json, exact bytes",
		not served["wrong"] and not served["wrong_urls"],
	)
	say.check("every deleted file: 404", served["gone"] > 0 and not served["gone_not_404"])
	say.check(
		"every link resolves and every file is reachable from a manifest",
		not served["bad_links"] and not served["unreached"],
	)
	say.close_step()

	recovered = drill.recover()
	report, found = recovered["report"], recovered["found"]
	say.step(
		"5. endpoint back",
		f"restarted with its objects in {drill.seconds['restart']:.1f} s; verify found {len(found['missing'])} "
		f"missing, {len(found['mismatched'])} differing and {len(found['extra'])} extra; "
		f"{recovered['uploaded']} uploaded from the disk and {recovered['deleted']} deleted; "
		f"the CDN holds {report.matched:,} identical copies",
		drill.seconds["recover"],
	)
	say.check(
		"verify found exactly the files the drill added, changed and deleted",
		found == recovered["expected"] and all(found.values()),
	)
	say.check("uploads and deletes without a failure", not recovered["failed"])
	say.check(
		"verify: the CDN matches the disk, file for file",
		report.clean and report.matched == report.local_count == report.remote_count == fallback["live"],
	)
	say.close_step()


def main(argv: list[str] | None = None) -> int:
	parser = argparse.ArgumentParser(
		description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
	)
	parser.add_argument(
		"--plans", type=int, default=10, help="plans of 9 subjects of 10 units (default: %(default)s)"
	)
	parser.add_argument("--rounds", type=int, default=5, help="rounds of changes during the outage")
	args = parser.parse_args(argv)
	if find_nginx() is None:
		print(NOT_INSTALLED, file=sys.stderr)
		return 2

	base = RESULTS_DIR / "tmp"
	base.mkdir(parents=True, exist_ok=True)
	workdir = Path(tempfile.mkdtemp(prefix="bench_outage_drill.", dir=base))
	workdir.chmod(0o755)  # nginx workers run as the web server's user
	(workdir / "sites" / SITE).mkdir(parents=True)
	say = Narrator()
	endpoint = CrashableEndpoint(workdir).start()
	try:
		with Nginx(workdir / "sites", SITE, workdir / "nginx") as nginx:
			print(
				f"S3 endpoint (moto) at {endpoint.url}, nginx at {nginx.url}, site folder {workdir / 'sites' / SITE}"
			)
			run(Drill(workdir, endpoint, nginx, plans=args.plans, rounds=args.rounds), say)
	finally:
		endpoint.stop()
		shutil.rmtree(workdir, ignore_errors=True)

	print(
		f"\n{'all checks passed' if not say.failed else f'{len(say.failed)} checks FAILED: {say.failed}'}\n"
	)
	table = markdown_table(["step", "what happened", "seconds", "checks passed"], say.rows)
	write_results(
		"bench_outage_drill",
		{
			"plans": args.plans,
			"rounds": args.rounds,
			"goal": {"met": not say.failed, "failed_checks": say.failed},
			"steps": [
				dict(zip(["step", "story", "seconds", "checks"], row, strict=True)) for row in say.rows
			],
		},
		table,
	)
	return 1 if say.failed else 0


if __name__ == "__main__":
	sys.exit(main())
