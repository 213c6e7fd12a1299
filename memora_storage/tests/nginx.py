"""A real nginx serving a site's public files the way `bench setup nginx` configures it.

Used by the outage drills (core and Frappe) and the load benchmark. The server block keeps the
rule of frappe-bench's template (bench/config/templates/nginx.conf): `root` is the bench's `sites`
folder and every request first tries `/{site}/public/$uri`, so `/files/memora_content/X` is served
from `sites/{site}/public/files/memora_content/X` with no location block of our own. Where bench
hands a miss to gunicorn (`@webserver`), this answers 404, which is what Frappe answers for a
missing file. nginx runs in the foreground with its own prefix (pid, logs, temp folders), on
127.0.0.1 only, and is stopped by whoever started it.

No Frappe import here: the core tests and the benchmarks use it too.
"""

import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"

# The lines of frappe-bench's template this server block reproduces, with its Jinja placeholders;
# `bench_template_drift` checks an installed frappe-bench still has them.
BENCH_TEMPLATE_RULES = (
	"root {{ sites_path }};",
	"try_files /{{ site_name }}/public/$uri @webserver;",
)

_SERVER_BLOCK = r"""
	server {
		listen %(host)s:%(port)d backlog=%(backlog)d;
		server_name %(site)s;
		root %(sites_path)s;

		location / {
			rewrite ^(.+)/$ $1 permanent;
			rewrite ^(.+)/index\.html$ $1 permanent;
			rewrite ^(.+)\.html$ $1 permanent;

			location ~* ^/files/.*.(htm|html|svg|xml) {
				add_header Content-disposition "attachment";
				try_files /%(site)s/public/$uri @webserver;
			}

			try_files /%(site)s/public/$uri @webserver;
		}

		# bench: proxy_pass to gunicorn, which answers a missing file with 404.
		location @webserver {
			return 404;
		}

		sendfile on;
		keepalive_timeout 15;
		client_max_body_size 50m;
		client_body_buffer_size 16K;
		client_header_buffer_size 1k;

		gzip on;
		gzip_http_version 1.1;
		gzip_comp_level 5;
		gzip_min_length 256;
		gzip_proxied any;
		gzip_vary on;
		gzip_types application/javascript application/json application/xml text/css text/plain;
	}
"""

_MAIN = r"""%(user)s
daemon off;
worker_processes %(workers)s;
worker_rlimit_nofile %(rlimit)d;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log warn;

events {
	worker_connections %(connections)d;
}

http {
	%(types)s
	default_type application/octet-stream;
	access_log %(access_log)s;
	client_body_temp_path %(prefix)s/client_body;
	proxy_temp_path %(prefix)s/proxy;
	fastcgi_temp_path %(prefix)s/fastcgi;
	uwsgi_temp_path %(prefix)s/uwsgi;
	scgi_temp_path %(prefix)s/scgi;
%(server)s
}
"""


class NginxError(RuntimeError):
	"""nginx would not start; the message carries its error log."""


def find_nginx() -> str | None:
	"""The nginx binary, also where /usr/sbin is not on PATH (a non-root shell)."""
	found = shutil.which("nginx")
	if found:
		return found
	return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


NOT_INSTALLED = "nginx is not installed (Debian/Ubuntu: apt-get install -y nginx)"


def _mime_types(binary: str) -> str:
	"""`include` the distribution's mime.types, as its nginx.conf does; a minimal map without one."""
	info = subprocess.run([binary, "-V"], capture_output=True, text=True).stderr
	match = re.search(r"--conf-path=(\S+)", info)
	if match:
		types = Path(match.group(1)).parent / "mime.types"
		if types.is_file():
			return f"include {types};"
	return "types { application/json json; text/html html; text/plain txt; }"


def _worker_user() -> str:
	"""As root, workers run as the web server's user (Debian: www-data), as in production."""
	if os.geteuid() != 0:
		return ""
	for name in ("www-data", "nginx", "nobody"):
		try:
			pwd.getpwnam(name)
		except KeyError:
			continue
		return f"user {name};"
	return ""


def free_port() -> int:
	with socket.socket() as s:
		s.bind((HOST, 0))
		return s.getsockname()[1]


class Nginx:
	"""nginx serving `sites_path` for `site` on a free port of 127.0.0.1, from a private prefix folder."""

	def __init__(
		self,
		sites_path: str | os.PathLike,
		site: str,
		prefix: str | os.PathLike,
		worker_connections: int = 1024,
		rlimit_nofile: int = 4096,
		backlog: int = 511,
		access_log: bool = True,
	):
		binary = find_nginx()
		if not binary:
			raise NginxError(NOT_INSTALLED)
		self.binary = binary
		self.sites_path = Path(sites_path).resolve()
		self.site = site
		self.prefix = Path(prefix).resolve()
		self.port = free_port()
		self.url = f"http://{HOST}:{self.port}"
		self.conf = self.prefix / "nginx.conf"
		self.error_log = self.prefix / "error.log"
		self.config = _MAIN % {
			"user": _worker_user(),
			"workers": "auto",
			"rlimit": rlimit_nofile,
			"prefix": self.prefix,
			"connections": worker_connections,
			"types": _mime_types(binary),
			"access_log": f"{self.prefix}/access.log" if access_log else "off",
			"server": _SERVER_BLOCK
			% {
				"host": HOST,
				"port": self.port,
				"backlog": backlog,
				"site": site,
				"sites_path": self.sites_path,
			},
		}
		self._process: subprocess.Popen | None = None

	def start(self, timeout: float = 15.0) -> "Nginx":
		self.prefix.mkdir(parents=True, exist_ok=True)
		self.prefix.chmod(0o755)  # workers running as another user create temp files here
		self.conf.write_text(self.config, encoding="utf-8")
		# Until it has read its config, nginx reports to stderr; then to the error log.
		with open(self.prefix / "stderr.log", "wb") as stderr:
			self._process = subprocess.Popen(
				[self.binary, "-p", str(self.prefix), "-c", str(self.conf)],
				stdin=subprocess.DEVNULL,
				stdout=subprocess.DEVNULL,
				stderr=stderr,
			)
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if self._process.poll() is not None:
				raise NginxError(f"nginx exited at start: {self._errors()}")
			try:
				socket.create_connection((HOST, self.port), timeout=0.5).close()
				return self
			except OSError:
				time.sleep(0.05)
		self.stop()
		raise NginxError(f"nginx did not listen on {self.url} within {timeout:g} s: {self._errors()}")

	def _errors(self) -> str:
		logs = [self.prefix / "stderr.log", self.error_log]
		text = "".join(log.read_text(errors="replace") for log in logs if log.exists())
		return text[-2000:].strip() or "no error output"

	def stop(self) -> None:
		"""Fast shutdown (SIGTERM) of the master, which stops its workers."""
		process, self._process = self._process, None
		terminate(process)

	def __enter__(self) -> "Nginx":
		return self.start()

	def __exit__(self, *exc) -> None:
		self.stop()


def terminate(process: subprocess.Popen | None) -> None:
	"""SIGTERM a server started here and wait for it; SIGKILL after 10 s."""
	if not process or process.poll() is not None:
		return
	process.send_signal(signal.SIGTERM)
	try:
		process.wait(10)
	except subprocess.TimeoutExpired:
		process.kill()
		process.wait()


def bench_template() -> Path | None:
	"""frappe-bench's nginx template: from this interpreter's packages (the test extra installs it),
	else through the `bench` command on PATH."""
	spec = importlib.util.find_spec("bench")
	if spec and spec.origin:
		template = Path(spec.origin).parent / "config" / "templates" / "nginx.conf"
		if template.exists():
			return template
	command = shutil.which("bench")
	if not command:
		return None
	venv = Path(os.path.realpath(command)).parent.parent
	found = sorted(venv.glob("lib/python*/site-packages/bench/config/templates/nginx.conf"))
	return found[0] if found else None


def bench_template_drift(template: Path) -> list[str]:
	"""The rules this server block copies that the template no longer has (empty: still the same)."""
	text = template.read_text(encoding="utf-8")
	return [rule for rule in BENCH_TEMPLATE_RULES if rule not in text]
