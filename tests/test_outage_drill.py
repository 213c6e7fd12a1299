"""Core outage drill (SC-004, SC-005): the CDN endpoint dies, content keeps changing, every upload and
delete through the app's Uploader and CdnBucket fails as unreachable while the CDN keeps what it had,
and every file stays reachable from the local server, through a real nginx, with the exact bytes on
disk. When the endpoint returns, verify finds exactly the differences the drill made; uploading and
deleting them from the disk makes the bucket match it again (SC-003).

The scenario and its parts are in outage_drill.py; this asserts every fact each step returns. It
has no queue: that the app's Content File rows lose nothing during an outage is asserted by the
site drill, memora_storage/tests/test_outage_drill.py.
"""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from outage_drill import CDN_BASE, SITE, CrashableEndpoint, Drill

from memora_storage.tests.nginx import NOT_INSTALLED, Nginx, bench_template, bench_template_drift, find_nginx
from memora_storage.utils.s3 import CdnError, CdnErrorKind


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[CrashableEndpoint]:
	"""A moto server of this test's own: the session's server must survive the drill."""
	server = CrashableEndpoint(tmp_path).start()
	yield server
	server.stop()


@pytest.fixture
def site_dir() -> Iterator[Path]:
	"""`sites/` with one site, readable by nginx workers running as another user (pytest's tmp is 0700)."""
	top = Path(tempfile.mkdtemp(prefix="memora-drill-"))
	top.chmod(0o755)
	(top / "sites" / SITE).mkdir(parents=True)
	yield top
	shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def nginx(site_dir: Path) -> Iterator[Nginx]:
	if find_nginx() is None:
		pytest.skip(NOT_INSTALLED)
	with Nginx(site_dir / "sites", SITE, site_dir / "nginx") as server:
		yield server


def test_nginx_config_keeps_bench_rule():
	"""The drill's nginx serves `/files/` with the very rule `bench setup nginx` writes."""
	template = bench_template()
	if template is None:
		pytest.skip("frappe-bench is not installed (pip install -e '.[test]'): no template to compare with")
	assert bench_template_drift(template) == []


def test_cdn_outage_drill(nginx: Nginx, site_dir: Path, endpoint: CrashableEndpoint):
	drill = Drill(site_dir, endpoint, nginx)

	normal = drill.normal()
	assert normal["documents"] >= 1000
	assert normal["written"] == normal["synced"] == normal["documents"]
	assert normal["failed"] == 0
	assert normal["first_link"].startswith(CDN_BASE + "/plans/plan-00/subjects/")
	report = normal["report"]
	assert report.clean and report.matched == report.local_count == normal["documents"]

	outage = drill.outage()
	assert isinstance(outage["probe"], CdnError)
	assert outage["probe"].kind == CdnErrorKind.UNREACHABLE
	for n, round_ in enumerate(outage["rounds"]):
		assert round_["failed"] == round_["attempted"] > 0, n  # every attempt failed; none was skipped
	assert all(isinstance(e, CdnError) and e.kind == CdnErrorKind.UNREACHABLE for e in outage["errors"])
	assert outage["synced"] == drill.before_outage  # nothing claimed as sent

	fallback = drill.fallback()
	assert fallback["failed"] == fallback["relinked"] > 0
	assert fallback["on_disk_not_live"] == set()  # the disk holds exactly the live content
	assert fallback["removed_but_live"] == set()

	served = drill.serve()
	assert served["wrong_urls"] == []
	assert served["wrong"] == []
	assert served["served"] == fallback["live"]
	assert served["gone"] > 0
	assert served["gone_not_404"] == []
	assert served["bad_links"] == []
	assert served["unreached"] == set()

	recovered = drill.recover()
	# The endpoint came back with what it held before the outage: verify finds what the drill changed.
	assert recovered["found"] == recovered["expected"]
	assert all(recovered["expected"].values()), recovered["expected"]  # new, updated and deleted files
	assert recovered["failed"] == 0
	report = recovered["report"]
	assert report.clean, (report.missing[:5], report.extra[:5], report.mismatched[:5])
	assert report.matched == report.local_count == report.remote_count == fallback["live"]
