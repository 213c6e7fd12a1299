"""A real S3 endpoint for tests and benchmarks (moto's server in a subprocess) and a proxy that breaks it.

boto3 talks HTTP to these exactly as it talks to a production bucket; nothing is patched in-process.
"""

import collections
import hashlib
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from memora_storage.utils.s3 import CHECKSUMS_WHEN_REQUIRED, send_content_md5_only

HOST = "127.0.0.1"


def free_port() -> int:
	with socket.socket() as s:
		s.bind((HOST, 0))
		return s.getsockname()[1]


def raw_client(endpoint_url: str, access_key: str, secret_key: str, service: str = "s3"):
	"""A plain boto3 client for arranging and inspecting state behind the code under test; like the
	app's own, it sends no checksum header a strict store refuses, whichever boto3 is installed."""
	client = boto3.session.Session().client(
		service,
		endpoint_url=endpoint_url,
		region_name="us-east-1",
		aws_access_key_id=access_key,
		aws_secret_access_key=secret_key,
		config=Config(**CHECKSUMS_WHEN_REQUIRED, s3={"addressing_style": "path"}),
	)
	if service == "s3":
		send_content_md5_only(client)
	return client


class MotoServer:
	"""`python -m moto.server` on a free local port; its request log is kept in `log_path`."""

	def __init__(self, log_path: str | os.PathLike):
		self.log_path = Path(log_path)
		self.port = free_port()
		self.url = f"http://{HOST}:{self.port}"
		self._process: subprocess.Popen | None = None

	def start(self, timeout: float = 30.0) -> "MotoServer":
		log = open(self.log_path, "wb")
		self._process = subprocess.Popen(
			[sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
			stdout=log,
			stderr=subprocess.STDOUT,
		)
		log.close()
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if self._process.poll() is not None:
				raise RuntimeError(f"moto server exited at start: {self.log_path.read_text()[-2000:]}")
			try:
				urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1).read()
				return self
			except (OSError, urllib.error.URLError):
				time.sleep(0.1)
		self.stop()
		raise RuntimeError(f"moto server did not answer on {self.url} within {timeout:g} s")

	def stop(self) -> None:
		if self._process and self._process.poll() is None:
			self._process.terminate()
			try:
				self._process.wait(10)
			except subprocess.TimeoutExpired:
				self._process.kill()
				self._process.wait()

	def set_auth(self, enforced: bool) -> None:
		"""Make moto check signatures and IAM policies on every request (or stop checking)."""
		request = urllib.request.Request(
			f"{self.url}/moto-api/reset-auth",
			data=b"0" if enforced else b"inf",
			headers={"Content-Type": "text/plain"},  # a form body would be parsed away before moto reads it
			method="POST",
		)
		urllib.request.urlopen(request, timeout=5).read()

	def logged_requests(self) -> collections.Counter:
		"""Requests served so far by HTTP method, from the server's access log."""
		counts: collections.Counter = collections.Counter()
		# werkzeug colours some lines: `"\x1b[35m\x1b[1mDELETE /key HTTP/1.1\x1b[0m" 204`.
		for match in re.finditer(
			rb'"(?:\x1b\[[\d;]*m)*(GET|PUT|POST|HEAD|DELETE) ', self.log_path.read_bytes()
		):
			counts[match.group(1).decode()] += 1
		return counts


# 501 NotImplemented: what community MinIO answers to the bucket CORS calls.
# 503 ServiceUnavailable: a store that is down; its "slow down" answer is the `throttle` mode's.
_STATUS_CODES = {
	403: "AccessDenied",
	429: "TooManyRequests",
	500: "InternalError",
	501: "NotImplemented",
	503: "ServiceUnavailable",
}


class FaultProxy:
	"""A threaded HTTP proxy in front of an S3 endpoint that can misbehave on demand.

	Faults: an HTTP status (403, 500, 501, 503) answered instead of forwarding; "hang" (never answer
	until cleared); "reset" (drop the connection without an answer); "corrupt-body" (flip the last
	byte of a PUT body before forwarding); "corrupt-etag" (alter the ETag in PUT and HEAD answers);
	"kms-etag" (every ETag, in PUT, HEAD and listing answers alike, becomes another hex string, as
	on a bucket with SSE-KMS where the ETag is not the MD5 of the bytes); "slow-put" (hold each PUT
	for `delay` seconds before forwarding it, as a slow or congested endpoint; `peak_held` counts the
	most PUTs held at once, i.e. how many requests the client really had in flight).
	`stop_after` makes the endpoint vanish (connections refused, open ones cut) after that many
	requests, as when a CDN goes down in the middle of a sync.
	`strict` answers like Backblaze B2 to any request carrying a checksum header of boto3 1.36 and
	later (`x-amz-checksum-*`, `x-amz-sdk-checksum-*`, `x-amz-trailer`) or an aws-chunked body: 400
	InvalidArgument "Unsupported header ..."; `refused` counts those answers.
	`throttle` is the share of PUTs (0 to 1, drawn from a seeded random) answered 503 SlowDown "Please
	reduce your request rate", as S3 does above ~3,500 PUT/s per prefix; `throttled` counts them.
	`denied` holds IAM actions (`s3:PutBucketCORS`, ...) answered 403 AccessDenied, as a store does to
	keys whose policy lacks them; the other requests go through.
	"""

	def __init__(self, upstream_port: int):
		self.upstream_port = upstream_port
		self.port = free_port()
		self.url = f"http://{HOST}:{self.port}"
		self.fault: str | int | None = None
		self.fault_after = 0
		self.stop_after: int | None = None
		self.delay = 2.0
		self.denied: set[str] = set()
		self.strict = False
		self.refused = 0
		self.throttle = 0.0
		self.throttled = 0
		self._random = random.Random(17)
		self.seen = 0
		self.forwarded: collections.Counter = collections.Counter()
		self.held = 0
		self.peak_held = 0
		self._lock = threading.Lock()
		self._release = threading.Event()
		self._listener: socket.socket | None = None
		self._clients: set[socket.socket] = set()

	def start(self) -> "FaultProxy":
		listener = socket.socket()
		listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
		listener.bind((HOST, self.port))
		listener.listen(128)
		self._listener = listener
		threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
		return self

	def stop(self) -> None:
		"""Refuse new connections and cut the open ones."""
		with self._lock:
			listener, self._listener = self._listener, None
			clients, self._clients = self._clients, set()
		if listener:
			_shutdown(listener)
		for client in clients:
			_reset(client)

	def set_fault(self, fault: str | int | None, after: int = 0) -> None:
		"""Misbehave as `fault` from the request after the next `after` ones on."""
		with self._lock:
			self.fault = fault
			self.fault_after = self.seen + after
			if self._release.is_set():
				self._release = threading.Event()

	def clear(self) -> None:
		"""Behave again, and let hung requests go (they are closed without an answer)."""
		with self._lock:
			self.fault = None
			self.stop_after = None
			self._release.set()

	def _throttles(self) -> bool:
		with self._lock:
			if self.throttle <= 0 or self._random.random() >= self.throttle:
				return False
			self.throttled += 1
			return True

	def _accept(self, listener: socket.socket) -> None:
		while True:
			try:
				client, _ = listener.accept()
			except OSError:
				return
			with self._lock:
				self._clients.add(client)
			threading.Thread(target=self._serve, args=(client,), daemon=True).start()

	def _serve(self, client: socket.socket) -> None:
		try:
			request = _read_head(client)
			if request is None:
				return
			head, body = request
			method = head.split(b" ", 1)[0].decode()
			with self._lock:
				self.seen += 1
				fault = self.fault if self.seen > self.fault_after else None
				stop_now = self.stop_after is not None and self.seen >= self.stop_after
				release = self._release
			unsupported = self.strict and unsupported_header(head)
			if unsupported:
				if _read_body(client, head, body) is None:
					return
				with self._lock:
					self.refused += 1
				client.sendall(
					_error_response(
						400,
						method,
						"InvalidArgument",
						f"Unsupported header '{unsupported}' received for this API call.",
					)
				)
			elif s3_action(head) in self.denied:
				client.sendall(_error_response(403, method))
			elif method == "PUT" and self._throttles():
				if _read_body(client, head, body) is None:
					return
				client.sendall(_error_response(503, method, "SlowDown", "Please reduce your request rate."))
			elif isinstance(fault, int):
				client.sendall(_error_response(fault, method))
			elif fault == "hang":
				release.wait(60)
			elif fault == "reset":
				_reset(client)
			else:
				body = _read_body(client, head, body)
				if body is None:
					return
				if fault == "slow-put" and method == "PUT":
					with self._lock:
						self.held += 1
						self.peak_held = max(self.peak_held, self.held)
					try:
						time.sleep(self.delay)
					finally:
						with self._lock:
							self.held -= 1
				if fault == "corrupt-body" and method == "PUT" and body:
					body = body[:-1] + bytes([body[-1] ^ 0xFF])
				response = self._forward(head, body)
				with self._lock:
					self.forwarded[method] += 1
				if fault == "corrupt-etag" and method in ("PUT", "HEAD"):
					response = re.sub(rb'(?i)(\r\netag: *")([0-9a-f])', _other_digit, response, count=1)
				elif fault == "kms-etag":
					response = re.sub(
						rb'(?i)(etag(?:: *|>)(?:"|&quot;|&#34;)?)([0-9a-f]{32})', _not_md5, response
					)
				client.sendall(response)
			if stop_now:
				self.stop()
		except OSError:
			pass
		finally:
			with self._lock:
				self._clients.discard(client)
			client.close()

	def _forward(self, head: bytes, body: bytes) -> bytes:
		"""Send one request upstream with `Connection: close` and return the whole answer."""
		head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", head)
		head = head[:-2] + b"Connection: close\r\n\r\n"
		with socket.create_connection((HOST, self.upstream_port), timeout=30) as upstream:
			upstream.sendall(head + body)
			chunks = []
			while chunk := upstream.recv(65536):
				chunks.append(chunk)
		return b"".join(chunks)


# Bucket sub-resources whose IAM action is named after them rather than after the object calls.
_SUBRESOURCE_ACTIONS = {"cors": "BucketCORS", "policy": "BucketPolicy", "acl": "BucketAcl"}
_OBJECT_ACTIONS = {"GET": "GetObject", "HEAD": "GetObject", "PUT": "PutObject", "DELETE": "DeleteObject"}


def s3_action(head: bytes) -> str:
	"""The IAM action a request needs, from its request line (path-style addressing)."""
	method, target = head.split(b" ", 2)[:2]
	method, target = method.decode(), target.decode()
	path, _, query = target.partition("?")
	params = {item.partition("=")[0] for item in query.split("&") if item}
	for name, action in _SUBRESOURCE_ACTIONS.items():
		if name in params:
			return f"s3:{'Get' if method == 'GET' else 'Put' if method == 'PUT' else 'Delete'}{action}"
	if method == "POST" and "delete" in params:
		return "s3:DeleteObject"
	if path.strip("/").count("/") == 0:
		return "s3:ListBucket"
	return f"s3:{_OBJECT_ACTIONS.get(method, method)}"


def unsupported_header(head: bytes) -> str | None:
	"""The first header of `head` a store like B2 refuses: boto3 1.36's checksums or an aws-chunked body."""
	for line in head.split(b"\r\n")[1:]:
		name, _, value = line.decode("latin-1").partition(":")
		name, value = name.strip().lower(), value.strip().lower()
		if name.startswith(("x-amz-checksum-", "x-amz-sdk-checksum-")) or name == "x-amz-trailer":
			return name
		if (name == "content-encoding" and "aws-chunked" in value) or (
			name == "x-amz-content-sha256" and value.startswith("streaming-")
		):
			return name
	return None


def _read_head(client: socket.socket) -> tuple[bytes, bytes] | None:
	"""The request line and headers, and whatever part of the body came with them."""
	data = b""
	while b"\r\n\r\n" not in data:
		chunk = client.recv(65536)
		if not chunk:
			return None
		data += chunk
	head, _, body = data.partition(b"\r\n\r\n")
	return head + b"\r\n\r\n", body


def _read_body(client: socket.socket, head: bytes, body: bytes) -> bytes | None:
	"""The rest of the body; None if the client went away before sending it all."""
	length = re.search(rb"(?im)^content-length: *(\d+)", head)
	remaining = int(length.group(1)) if length else 0
	while len(body) < remaining:
		chunk = client.recv(65536)
		if not chunk:
			return None
		body += chunk
	return body


def _error_response(
	status: int, method: str, code: str | None = None, message: str = "injected by the test proxy"
) -> bytes:
	code = code or _STATUS_CODES.get(status, "InternalError")
	body = (
		b""
		if method == "HEAD"
		else (
			f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
			f"<Message>{message}</Message></Error>"
		).encode()
	)
	return (
		f"HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\n"
		f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
	).encode() + body


def _not_md5(match: re.Match) -> bytes:
	"""The same 32 hex digits always become the same other ones, as a store's own ETag would be."""
	return match.group(1) + hashlib.md5(b"kms:" + match.group(2)).hexdigest().encode()


def _other_digit(match: re.Match) -> bytes:
	return match.group(1) + (b"1" if match.group(2) == b"0" else b"0")


def _shutdown(sock: socket.socket) -> None:
	try:
		sock.shutdown(socket.SHUT_RDWR)
	except OSError:
		pass
	sock.close()


def _reset(sock: socket.socket) -> None:
	"""Close with an RST, as a crashed server or a cut network would."""
	try:
		sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
		sock.shutdown(socket.SHUT_RDWR)
	except OSError:
		pass
	sock.close()
