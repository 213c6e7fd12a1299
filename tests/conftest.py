"""Shared fixtures for the core tests: a real S3 endpoint (moto's server over HTTP) and fresh buckets on it."""

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


@pytest.fixture
def cdn(moto_server: MotoServer, bucket_name: str) -> CdnBucket:
	"""The bucket under test, reached directly, with content under the key prefix `memora`."""
	return CdnBucket(make_config(moto_server.url, bucket_name, key_prefix="memora"))


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
	"""A fault-injecting proxy in front of moto, healthy until a test breaks it."""
	fault_proxy = FaultProxy(moto_server.port).start()
	yield fault_proxy
	fault_proxy.clear()
	fault_proxy.stop()


@pytest.fixture
def proxied_cdn(proxy: FaultProxy, bucket_name: str) -> CdnBucket:
	"""The same bucket as `cdn`, reached through the proxy, with a read timeout short enough to test hangs."""
	return CdnBucket(
		make_config(proxy.url, bucket_name, key_prefix="memora", read_timeout=1.0, connect_timeout=1.0)
	)
