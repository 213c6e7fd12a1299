"""Shared fixtures for the core tests: a real S3 endpoint (moto's server over HTTP), fresh buckets on it,
and a Redis server of the test session's own."""

import collections
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3_helpers
from s3_helpers import FaultProxy, MotoServer

from memora_storage.utils import canonical
from memora_storage.utils.s3 import CdnBucket, S3Config
from memora_storage.utils.store import ContentStore

# moto accepts any keys until auth is switched on; passed explicitly, never read from the environment.
ACCESS_KEY = "AKIAMEMORATEST000001"
SECRET_KEY = "memora-test-secret-key-do-not-log-0001"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
	"""One moto server process for the whole session, stopped at the end."""
	server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log").start()
	yield server
	server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
	"""A Redis server on a free port for the session (MEMORA_TEST_REDIS names another instead)."""
	if url := os.environ.get("MEMORA_TEST_REDIS"):
		yield url
		return
	command = shutil.which("redis-server") or "/usr/sbin/redis-server"
	if not os.path.exists(command):
		pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
	port = s3_helpers.free_port()
	folder = tmp_path_factory.mktemp("redis")
	server = subprocess.Popen(
		[command, "--port", str(port), "--bind", s3_helpers.HOST, "--save", "", "--appendonly", "no"],
		cwd=folder,
		stdout=open(folder / "redis.log", "wb"),
		stderr=subprocess.STDOUT,
	)
	url = f"redis://{s3_helpers.HOST}:{port}/0"
	deadline = time.monotonic() + 10
	while not _answers(port):
		if server.poll() is not None or time.monotonic() > deadline:
			server.kill()
			raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text()[-2000:]}")
		time.sleep(0.05)
	yield url
	server.terminate()
	server.wait(10)


def _answers(port: int) -> bool:
	try:
		with socket.create_connection((s3_helpers.HOST, port), timeout=0.5) as sock:
			sock.sendall(b"PING\r\n")
			return sock.recv(16).startswith(b"+PONG")
	except OSError:
		return False


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
	"""One line counting skips by reason, so two machines' runs can be compared at a glance."""
	reasons: collections.Counter = collections.Counter()
	for report in terminalreporter.stats.get("skipped", []):
		reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
		reasons[reason.removeprefix("Skipped: ")] += 1
	summary = "; ".join(f"{count} × {reason}" for reason, count in sorted(reasons.items()))
	terminalreporter.write_line(f"skips: {sum(reasons.values())}" + (f" ({summary})" if summary else ""))


def make_config(endpoint_url: str, bucket: str, **overrides) -> S3Config:
	"""An S3Config as the Frappe layer would build it from CDN Settings, with test credentials."""
	values = {
		"bucket": bucket,
		"endpoint_url": endpoint_url,
		"region": "us-east-1",
		"access_key": ACCESS_KEY,
		"secret_key": SECRET_KEY,
		"addressing_style": "path",
		"connect_timeout": 2.0,
		"read_timeout": 5.0,
	}
	values.update(overrides)
	return S3Config(**values)


def raw_client(
	endpoint_url: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, service: str = "s3"
):
	"""A plain boto3 client with the test keys, for arranging and inspecting the bucket."""
	return s3_helpers.raw_client(endpoint_url, access_key, secret_key, service)


@pytest.fixture
def bucket_name(moto_server: MotoServer) -> str:
	"""A fresh, empty bucket for one test."""
	name = f"memora-test-{uuid.uuid4().hex[:12]}"
	raw_client(moto_server.url).create_bucket(Bucket=name)
	return name


@pytest.fixture(scope="session")
def strict_store(moto_server: MotoServer) -> Iterator[FaultProxy]:
	"""moto behind a proxy that refuses checksum headers as Backblaze B2 does: the store every core
	S3 test talks to, so each runs against the strictest S3 flavour with whichever boto3 is installed."""
	strict = FaultProxy(moto_server.port).start()
	strict.strict = True
	yield strict
	strict.stop()


@pytest.fixture
def cdn(strict_store: FaultProxy, bucket_name: str) -> CdnBucket:
	"""The bucket under test, on the strict store, with content under the key prefix `memora`."""
	return CdnBucket(make_config(strict_store.url, bucket_name, key_prefix="memora"))


@pytest.fixture
def content_store(tmp_path: Path) -> ContentStore:
	return ContentStore(tmp_path / "content", tmp_path / "locks")


def write_content(store: ContentStore, count: int, prefix: str = "units") -> dict[str, bytes]:
	"""`count` distinct JSON files (one Arabic-named) written through the store; path → bytes."""
	files = {}
	for n in range(count):
		name = "وحدة-الأعداد" if n == 0 else f"u{n:04}"
		path = f"{prefix}/{name}.json"
		data = canonical.dumps({"name": name, "n": n, "body": "نص " * (n % 7 + 1)})
		store.write(path, data)
		files[path] = data
	return files


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
	"""A fault-injecting proxy in front of moto, strict about checksum headers as B2 is, and otherwise
	healthy until a test breaks it."""
	fault_proxy = FaultProxy(moto_server.port).start()
	fault_proxy.strict = True
	yield fault_proxy
	fault_proxy.clear()
	fault_proxy.stop()


@pytest.fixture
def proxied_cdn(proxy: FaultProxy, bucket_name: str) -> CdnBucket:
	"""The same bucket as `cdn`, reached through the proxy, with a read timeout short enough to test hangs."""
	return CdnBucket(
		make_config(proxy.url, bucket_name, key_prefix="memora", read_timeout=1.0, connect_timeout=1.0)
	)
