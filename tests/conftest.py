"""Shared test fixtures, and the `alone` marker's guarantee."""

import contextlib
import fcntl
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture
def server(monkeypatch):
    """A real HTTP server on 127.0.0.1 serving `files` (name -> bytes; the last path component of
    a request names the file), counting requests; stopped at the end of the test."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    files, requests = {}, []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            if name not in files:
                self.send_error(404)
                return
            body = files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}/files/", files=files, requests=requests)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/files/"


def leftovers(folder):
    """Temp or partial files left in a folder."""
    return [p.name for p in Path(folder).iterdir() if p.name.endswith((".part", ".tmp"))]


@contextlib.contextmanager
def run_lock(tmp_path_factory, alone: bool):
    """Held while a test (or a shared fixture's work) runs: shared, or exclusive for an `alone` test,
    on a file all pytest-xdist workers see. A turnstile lock keeps new holders from starting while
    an `alone` test waits, so it is never starved."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    with open(root / "alone.turnstile", "a") as turnstile, open(root / "alone.lock", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _alone_or_beside_others(request, tmp_path_factory):
    """A test marked `alone` never runs beside another test, also under pytest-xdist's workers
    (`-n 2`). A module-scoped fixture is made before this lock is taken, so a fixture that runs work
    (a shared workflow run) holds `run_lock` itself while it does."""
    with run_lock(tmp_path_factory, request.node.get_closest_marker("alone") is not None):
        yield


# Module-scoped runs of the real workflow: under pytest-xdist with --dist loadgroup their tests are to
# go to one worker, so each run is made once. pytest-xdist 3.8.0 cannot do that under pytest 9.2: it
# tags a grouped test by assigning item._nodeid, which pytest 9 no longer reads (found 2026-12-07), so
# today each worker that runs one of these tests makes the run once. The marks stay for an xdist that
# groups again; the run holds run_lock while it is made, so an `alone` test never runs beside it.
SHARED_RUNS = ("tiny_run",)


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in SHARED_RUNS:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(name))
