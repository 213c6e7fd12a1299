"""Edge caches: Cache-Control lifetimes, and purges that reach a real Varnish in front of moto and the
providers' APIs (a local server recording what each provider would receive)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import boto3
import pytest
import requests
from conftest import raw_client

from memora_storage.tests.edges import VARNISH_MISSING, NginxCache, Varnish, find_varnishd
from memora_storage.tests.nginx import find_nginx
from memora_storage.utils import purge as purge_mod
from memora_storage.utils.purge import Lifetimes, PurgeConfig, lifetimes, purge


@pytest.mark.parametrize(
	("header", "expected"),
	[
		("public, max-age=60", Lifetimes(60, 60)),
		("public, max-age=0, s-maxage=86400", Lifetimes(86400, 0)),
		("public, s-maxage=30", Lifetimes(30, 0)),
		("public, max-age=31536000, immutable", Lifetimes(31536000, 31536000)),
		("private, max-age=60", Lifetimes(0, 60)),
		("no-store", Lifetimes(0, 0)),
		("no-cache, max-age=60", Lifetimes(0, 0)),
		('public, max-age="15"', Lifetimes(15, 15)),
		("", Lifetimes(0, 0)),
	],
)
def test_lifetimes(header: str, expected: Lifetimes) -> None:
	assert lifetimes(header) == expected
	assert lifetimes(header).longest == max(expected.edge, expected.browser)


class _Recorder(BaseHTTPRequestHandler):
	"""Answers like a provider's purge API and records each request; `fail` first answers 503s."""

	calls: ClassVar[list] = []
	fail = 0

	def _answer(self) -> None:
		length = int(self.headers.get("Content-Length") or 0)
		body = self.rfile.read(length) if length else b""
		type(self).calls.append((self.command, self.path, dict(self.headers), body))
		if type(self).fail:
			type(self).fail -= 1
			self.send_response(503)
			self.end_headers()
			return
		payload = json.dumps({"success": True, "status": "ok"}).encode()
		self.send_response(200)
		self.send_header("Content-Length", str(len(payload)))
		self.end_headers()
		self.wfile.write(payload)

	do_POST = do_PURGE = _answer

	def log_message(self, *args) -> None:
		pass


@pytest.fixture
def api():
	_Recorder.calls, _Recorder.fail = [], 0
	server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
	threading.Thread(target=server.serve_forever, daemon=True).start()
	yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
	server.shutdown()


def test_cloudflare_batches_of_30_with_the_token(api) -> None:
	url, recorder = api
	urls = [f"https://cdn.example.com/units/{n}.json" for n in range(65)]
	result = purge(PurgeConfig("Cloudflare", zone="z1", token="t0k", endpoint=url), urls)
	assert result.ok and result.requests == 3
	assert [json.loads(body)["files"] for _m, _p, _h, body in recorder.calls] == [
		urls[:30],
		urls[30:60],
		urls[60:],
	]
	assert {path for _m, path, _h, _b in recorder.calls} == {"/zones/z1/purge_cache"}
	assert all(headers["Authorization"] == "Bearer t0k" for _m, _p, headers, _b in recorder.calls)


def test_bunny_one_url_per_call_with_the_access_key(api) -> None:
	url, recorder = api
	result = purge(PurgeConfig("Bunny", token="k", endpoint=url), ["https://b.example/a.json?v=abc"])
	assert result.ok
	method, path, headers, _body = recorder.calls[0]
	assert method == "POST" and path == "/purge?url=https%3A%2F%2Fb.example%2Fa.json%3Fv%3Dabc"
	assert headers["AccessKey"] == "k"


def test_fastly_purges_the_url_itself_with_the_key(api) -> None:
	url, recorder = api
	assert purge(PurgeConfig("Fastly", token="fk"), [f"{url}/units/a.json"]).ok
	method, path, headers, _body = recorder.calls[0]
	assert (method, path, headers["Fastly-Key"]) == ("PURGE", "/units/a.json", "fk")


def test_a_failing_batch_is_retried_then_reported(api, monkeypatch) -> None:
	url, recorder = api
	slept = []
	recorder.fail = 2
	config = PurgeConfig("Cloudflare", zone="z", token="t", endpoint=url)
	assert purge(config, ["https://c/a"], sleep=slept.append).ok
	assert len(recorder.calls) == 3 and slept == [0.5, 1.0]
	recorder.fail = 99
	result = purge(config, ["https://c/a"], sleep=slept.append)
	assert not result.ok and "503" in result.error and result.requests == purge_mod.TRIES


def test_nothing_to_do_without_a_provider() -> None:
	assert purge(PurgeConfig("None"), ["https://c/a"]) == purge_mod.PurgeResult(True)


def test_cloudfront_invalidation_completes(moto_server) -> None:
	client = boto3.client(
		"cloudfront",
		endpoint_url=moto_server.url,
		region_name="us-east-1",
		aws_access_key_id="AKIAMEMORATEST000001",
		aws_secret_access_key="secret",
	)
	distribution = client.create_distribution(
		DistributionConfig={
			"CallerReference": "memora-test",
			"Origins": {
				"Quantity": 1,
				"Items": [
					{
						"Id": "o",
						"DomainName": "b.s3.amazonaws.com",
						"S3OriginConfig": {"OriginAccessIdentity": ""},
					}
				],
			},
			"DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0},
			"Comment": "",
			"Enabled": True,
		}
	)["Distribution"]["Id"]
	config = PurgeConfig(
		"CloudFront",
		zone=distribution,
		endpoint=moto_server.url,
		access_key="AKIAMEMORATEST000001",
		secret_key="secret",
	)
	result = purge(
		config,
		["https://d.cloudfront.net/content/units/a.json", "https://d.cloudfront.net/content/m.json?v=abc"],
	)
	assert result.ok, result.error
	listed = client.list_invalidations(DistributionId=distribution)["InvalidationList"]
	assert listed["Quantity"] == 1
	assert not purge(
		PurgeConfig("CloudFront", zone="nope", endpoint=moto_server.url),
		["https://d/a"],
		sleep=lambda s: None,
	).ok


def _put(endpoint: str, bucket: str, key: str, body: bytes, cache_control: str) -> None:
	raw_client(endpoint).put_object(Bucket=bucket, Key=key, Body=body, CacheControl=cache_control)


def _public(endpoint: str, bucket: str) -> None:
	statement = {
		"Effect": "Allow",
		"Principal": "*",
		"Action": "s3:GetObject",
		"Resource": f"arn:aws:s3:::{bucket}/*",
	}
	raw_client(endpoint).put_bucket_policy(
		Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
	)


@pytest.mark.skipif(not find_varnishd(), reason=VARNISH_MISSING)
def test_varnish_keeps_a_copy_for_its_lifetime_until_purged(moto_server, bucket_name) -> None:
	_public(moto_server.url, bucket_name)
	_put(moto_server.url, bucket_name, "u.json", b"old", "public, max-age=0, s-maxage=600")
	with Varnish(moto_server.port) as edge:
		url = f"{edge.url}/{bucket_name}/u.json"
		assert requests.get(url, timeout=5).content == b"old"
		_put(moto_server.url, bucket_name, "u.json", b"new", "public, max-age=0, s-maxage=600")
		second = requests.get(url, timeout=5)
		assert (second.content, second.headers["X-Cache"]) == (b"old", "HIT")  # the stale answer
		result = purge(PurgeConfig(purge_mod.VARNISH), [url, f"{url}?v=0123456789ab"])
		assert result.ok and result.requests == 2
		assert requests.get(url, timeout=5).content == b"new"
		# Through `endpoint`, the URL's host goes in the Host header.
		_put(moto_server.url, bucket_name, "u.json", b"newer", "public, s-maxage=600")
		assert requests.get(url, timeout=5).content == b"new"
		assert purge(PurgeConfig(purge_mod.VARNISH, endpoint=edge.url), [url]).ok
		assert requests.get(url, timeout=5).content == b"newer"


@pytest.mark.skipif(not find_nginx(), reason="nginx is not installed")
def test_nginx_cache_keeps_the_old_copy_and_cannot_be_purged(
	moto_server, bucket_name, tmp_path: Path
) -> None:
	_public(moto_server.url, bucket_name)
	_put(moto_server.url, bucket_name, "u.json", b"old", "public, max-age=600")
	with NginxCache(moto_server.port) as edge:
		url = f"{edge.url}/{bucket_name}/u.json"
		assert requests.get(url, timeout=5).content == b"old"
		_put(moto_server.url, bucket_name, "u.json", b"new", "public, max-age=600")
		assert requests.get(url, timeout=5).headers["X-Cache"] == "HIT"
		assert not purge(PurgeConfig(purge_mod.VARNISH), [url], sleep=lambda s: None).ok
		assert requests.get(url, timeout=5).content == b"old"
