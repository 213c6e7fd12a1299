"""Real caching edges in front of the test bucket, as a CDN's edge sits in front of a student.

- `Varnish`: Debian's varnishd with a VCL that keeps what the origin's Cache-Control allows
  (s-maxage, then max-age; no grace, so nothing is served past its lifetime) and accepts `PURGE`.
- `NginxCache`: nginx `proxy_cache`, also keeping what Cache-Control allows: an edge with no purge.

Both answer with `X-Cache: HIT` or `MISS`, for the hit ratio. No Frappe import: the core tests and
the benchmarks use them too. Each runs in the foreground on 127.0.0.1 from a private folder and is
stopped by whoever started it.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from memora_storage.tests.nginx import HOST, _mime_types, _worker_user, find_nginx, free_port, terminate

VARNISH_MISSING = "varnishd is not installed (Debian: apt-get install varnish)"
NGINX_MISSING = "nginx is not installed (Debian: apt-get install nginx)"

_VCL = """vcl 4.1;

backend origin {
	.host = "%(host)s";
	.port = "%(port)d";
}

sub vcl_recv {
	if (req.method == "PURGE") {
		return (purge);
	}
}

sub vcl_backend_response {
	if (!beresp.http.Cache-Control) {
		set beresp.uncacheable = true;
		set beresp.ttl = 0s;
		return (deliver);
	}
	set beresp.grace = 0s;
	set beresp.keep = 0s;
}

sub vcl_deliver {
	if (obj.hits > 0) {
		set resp.http.X-Cache = "HIT";
	} else {
		set resp.http.X-Cache = "MISS";
	}
}

sub vcl_purge {
	return (synth(200, "Purged"));
}
"""

_NGINX = """%(user)s
daemon off;
worker_processes 1;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log warn;
events { worker_connections 256; }
http {
	%(types)s
	access_log %(prefix)s/access.log;
	client_body_temp_path %(prefix)s/client_body;
	proxy_temp_path %(prefix)s/proxy;
	fastcgi_temp_path %(prefix)s/fastcgi;
	uwsgi_temp_path %(prefix)s/uwsgi;
	scgi_temp_path %(prefix)s/scgi;
	proxy_cache_path %(prefix)s/cache keys_zone=edge:4m inactive=1d;
	server {
		listen %(host)s:%(port)d;
		location / {
			proxy_pass http://%(host)s:%(backend)d;
			proxy_cache edge;
			proxy_cache_key $scheme$host$request_uri;
			proxy_http_version 1.1;
			add_header X-Cache $upstream_cache_status always;
		}
	}
}
"""


def find_varnishd() -> str | None:
	return shutil.which("varnishd") or next(
		(p for p in ("/usr/sbin/varnishd", "/usr/local/sbin/varnishd") if Path(p).exists()), None
	)


def _wait_listening(port: int, process: subprocess.Popen, errors, timeout: float = 20.0) -> None:
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if process.poll() is not None:
			raise RuntimeError(f"the edge exited at start: {errors()}")
		try:
			socket.create_connection((HOST, port), timeout=0.5).close()
			return
		except OSError:
			time.sleep(0.05)
	raise RuntimeError(f"the edge did not listen on {port}: {errors()}")


class _Edge:
	url = ""
	_process: subprocess.Popen | None = None

	def stop(self) -> None:
		process, self._process = self._process, None
		terminate(process)
		shutil.rmtree(self.prefix, ignore_errors=True)

	def __enter__(self):
		return self.start()

	def __exit__(self, *exc) -> None:
		self.stop()


class Varnish(_Edge):
	"""varnishd on a free port of 127.0.0.1 in front of `backend_port`."""

	purgeable = True

	def __init__(self, backend_port: int):
		self.binary = find_varnishd()
		if not self.binary:
			raise RuntimeError(VARNISH_MISSING)
		self.backend_port = backend_port
		self.port = free_port()
		self.url = f"http://{HOST}:{self.port}"
		self.prefix = Path(tempfile.mkdtemp(prefix="memora-varnish-"))

	def start(self) -> "Varnish":
		vcl = self.prefix / "edge.vcl"
		vcl.write_text(_VCL % {"host": HOST, "port": self.backend_port}, encoding="utf-8")
		self.prefix.chmod(0o755)
		self.log = self.prefix / "varnishd.log"
		with open(self.log, "wb") as log:
			self._process = subprocess.Popen(
				[
					*(self.binary, "-F", "-n", str(self.prefix / "work"), "-f", str(vcl)),
					*("-a", f"{HOST}:{self.port}", "-s", "malloc,32m", "-T", "none"),
					*("-p", "default_ttl=0", "-p", "default_grace=0", "-p", "default_keep=0"),
				],
				stdin=subprocess.DEVNULL,
				stdout=log,
				stderr=subprocess.STDOUT,
			)
		try:
			_wait_listening(self.port, self._process, lambda: self.log.read_text(errors="replace")[-2000:])
		except RuntimeError:
			self.stop()
			raise
		return self


class NginxCache(_Edge):
	"""nginx proxy_cache on a free port of 127.0.0.1 in front of `backend_port`: no purge."""

	purgeable = False

	def __init__(self, backend_port: int):
		self.binary = find_nginx()
		if not self.binary:
			raise RuntimeError(NGINX_MISSING)
		self.backend_port = backend_port
		self.port = free_port()
		self.url = f"http://{HOST}:{self.port}"
		self.prefix = Path(tempfile.mkdtemp(prefix="memora-edge-nginx-"))

	def start(self) -> "NginxCache":
		self.prefix.chmod(0o755)
		conf = self.prefix / "nginx.conf"
		conf.write_text(
			_NGINX
			% {
				"user": _worker_user(),
				"prefix": self.prefix,
				"types": _mime_types(self.binary),
				"host": HOST,
				"port": self.port,
				"backend": self.backend_port,
			},
			encoding="utf-8",
		)
		stderr = self.prefix / "stderr.log"
		with open(stderr, "wb") as err:
			self._process = subprocess.Popen(
				[self.binary, "-p", str(self.prefix), "-c", str(conf)],
				stdin=subprocess.DEVNULL,
				stdout=subprocess.DEVNULL,
				stderr=err,
			)
		try:
			_wait_listening(self.port, self._process, lambda: stderr.read_text(errors="replace")[-2000:])
		except RuntimeError:
			self.stop()
			raise
		return self
