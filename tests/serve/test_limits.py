"""``brainmri serve`` under a flood (issue 20): uploads held in memory, slow headers, slow bodies, dropped clients.

These run a real uvicorn server in a thread, with the configuration ``brainmri serve`` uses, and talk to it over
sockets: the limits live in the HTTP protocol and the body reading, which a test client does not exercise.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from brainmri.serve import limits
from brainmri.serve.app import create_app, server_config
from brainmri.serve.settings import ServeSettings

BOUNDARY = "brainmri-test-boundary"


@pytest.fixture
def serve(stand_in):
    """``serve(**settings)``: the address of a running server of the stand-in model (stopped at the end)."""
    import uvicorn

    servers = []

    def start(**settings) -> tuple[str, int]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        settings = ServeSettings(port=port, **settings)
        server = uvicorn.Server(server_config(create_app(stand_in, settings), settings, log_config=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return "127.0.0.1", port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def _files() -> list:
    """One PNG upload of 64 x 64 noise (over 4 KB: it does not compress) in the field ``files``."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(buffer, format="PNG")
    return [("files", ("a.png", buffer.getvalue(), "image/png"))]


def _head(length: int) -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _status(sock: socket.socket, timeout: float = 10) -> int | None:
    """The status code of the server's answer on ``sock``, or None when it closed the connection without one."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_uploads_beyond_the_memory_budget_are_refused_before_their_body_is_read(serve):
    # Issue 20: 60 concurrent 19 MB uploads took the server to 4.9 GB; the queue limit applied after the bodies.
    host, port = serve(max_upload_mb=1, max_pending_mb=1)
    with socket.create_connection((host, port)) as slow:
        slow.sendall(_head(1_048_000) + b"--" + BOUNDARY.encode())  # holds all but 576 bytes of the 1 MiB budget
        time.sleep(1.0)
        refused = httpx.post(f"http://{host}:{port}/predict", files=_files(), timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert (
            "the server holds 1 MiB of uploads already (--max-pending-mb 1); retry shortly" in refused.json()["detail"]
        )
    time.sleep(0.5)  # the dropped upload gives its share back
    assert httpx.post(f"http://{host}:{port}/predict", files=_files(), timeout=10).status_code == 200


def test_a_connection_that_never_completes_its_headers_is_closed(serve, monkeypatch):
    # Issue 20: 450 slow or partial connections were held with no timeout.
    monkeypatch.setattr(limits.HeaderDeadlineProtocol, "header_timeout_s", 0.5)
    host, port = serve()
    with socket.create_connection((host, port)) as slow:
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\n")  # and nothing more
        assert _status(slow, timeout=5) is None  # closed, without an answer
    with socket.create_connection((host, port)) as quick:  # a request that completes its headers is served
        quick.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert _status(quick) == 200


def test_a_body_that_stops_arriving_is_answered_408(serve, monkeypatch):
    monkeypatch.setattr(limits, "BODY_IDLE_S", 0.5)
    host, port = serve()
    with socket.create_connection((host, port)) as slow:
        slow.sendall(_head(5000) + b"--" + BOUNDARY.encode())
        assert _status(slow) == 408


def test_a_client_that_drops_mid_upload_is_one_log_line_not_a_traceback(serve, caplog):
    # Issue 20: every client that dropped mid-upload logged starlette's ClientDisconnect with a traceback.
    host, port = serve()
    with caplog.at_level(logging.INFO):
        with socket.create_connection((host, port)) as dropped:
            dropped.sendall(_head(100_000) + b"--" + BOUNDARY.encode())
            time.sleep(0.5)
        time.sleep(1.0)
        assert httpx.get(f"http://{host}:{port}/health", timeout=10).status_code == 200
    assert "a client disconnected before its upload was complete" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


@pytest.mark.parametrize("max_upload_mb, max_pending_mb, pending", [(20, None, 100), (80, None, 160), (1, 5, 5)])
def test_the_default_budget_fits_the_largest_request(max_upload_mb, max_pending_mb, pending):
    assert ServeSettings(max_upload_mb=max_upload_mb, max_pending_mb=max_pending_mb).pending_mb == pending


def test_a_budget_smaller_than_one_request_is_refused():
    from brainmri.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--max-pending-mb must be at least --max-upload-mb \(20\)"):
        ServeSettings(max_pending_mb=5)
