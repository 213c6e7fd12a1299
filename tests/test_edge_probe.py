"""The CDN health probe against a real HTTP server standing in for the edge: status, bytes, timeouts."""

import http.server
import threading
import time
from collections.abc import Iterator

import pytest
from s3_helpers import free_port

from memora_storage.utils import edge_probe, verify


class Edge(http.server.ThreadingHTTPServer):
	"""Serves the canary (or what a test sets instead) under /base/, as a CDN would."""

	daemon_threads = True
	body: bytes = edge_probe.CANARY_BYTES
	status: int = 200
	delay: float = 0.0
	paths: list[str]


class Handler(http.server.BaseHTTPRequestHandler):
	def do_GET(self) -> None:
		self.server.paths.append(self.path)
		time.sleep(self.server.delay)
		self.send_response(self.server.status)
		self.send_header("Content-Length", str(len(self.server.body)))
		self.end_headers()
		self.wfile.write(self.server.body)

	def log_message(self, *args) -> None:
		pass


@pytest.fixture
def edge() -> Iterator[Edge]:
	server = Edge(("127.0.0.1", 0), Handler)
	server.paths = []
	thread = threading.Thread(target=server.serve_forever, daemon=True)
	thread.start()
	yield server
	server.shutdown()
	server.server_close()


def base(server: Edge) -> str:
	return f"http://127.0.0.1:{server.server_address[1]}/base/"


def test_the_canary_served_whole_is_healthy(edge: Edge) -> None:
	result = edge_probe.probe(base(edge))
	assert result.ok, result.error
	assert (result.status, result.error) == (200, "")
	assert edge.paths == ["/base/.memora-canary.json"]  # the trailing slash of the base is not doubled
	assert result.latency_ms >= 0


def test_other_bytes_under_a_200_fail(edge: Edge) -> None:
	edge.body = edge_probe.CANARY_BYTES[:-1] + b" "
	result = edge_probe.probe(base(edge))
	assert not result.ok
	assert "not the canary" in result.error
	assert not result.missing


@pytest.mark.parametrize(("status", "missing"), [(404, True), (403, True), (502, False), (503, False)])
def test_an_error_status_fails_and_says_whether_the_canary_may_be_missing(
	edge: Edge, status: int, missing: bool
) -> None:
	edge.status = status
	result = edge_probe.probe(base(edge))
	assert (result.ok, result.status, result.missing) == (False, status, missing)
	assert f"HTTP {status}" in result.error


def test_a_closed_port_is_unreachable_at_once() -> None:
	started = time.monotonic()
	result = edge_probe.probe(f"http://127.0.0.1:{free_port()}")
	assert not result.ok
	assert result.status is None
	assert "unreachable" in result.error
	assert time.monotonic() - started < 2


def test_an_edge_slower_than_the_timeout_fails(edge: Edge) -> None:
	edge.delay = 1.5
	result = edge_probe.probe(base(edge), timeout=0.3)
	assert not result.ok
	assert "within 0.3 s" in result.error
	assert result.latency_ms < 1400


def test_the_canary_lands_under_the_key_prefix_and_verification_leaves_it_out(
	cdn, bucket_name, content_store
) -> None:
	cdn.put_canary(edge_probe.CANARY_PATH, edge_probe.CANARY_BYTES, edge_probe.CANARY_CACHE_CONTROL)
	stored = cdn.client.get_object(Bucket=bucket_name, Key=cdn.key("x")[:-1] + edge_probe.CANARY_PATH)
	assert stored["Body"].read() == edge_probe.CANARY_BYTES
	assert stored["CacheControl"] == "no-store"
	assert edge_probe.CANARY_PATH in {item.path for item in cdn.list()}
	report = verify.verify(content_store.root, cdn)
	assert (report.extra, report.remote_count) == ([], 0)
	with pytest.raises(ValueError):
		cdn.put_canary("units/x.json", b"{}", "no-store")
