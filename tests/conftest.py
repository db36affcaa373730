"""Fixtures shared by the unit tests."""
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the shared CI cores are not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- a local server: Range honoured or ignored, a connection cut once -------------------------------------------
class _Server:
    def __init__(self, folder: Path):
        self.folder = folder
        self.hits: list[tuple[str, str | None]] = []   # (file, Range header) per request
        self.honour_range = True
        self.cut: dict[str, list[int]] = {}             # file -> bytes sent before the connection drops, per request
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                state.hits.append((name, rng))
                path = state.folder / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng and state.honour_range else 0
                if start >= len(data) > 0:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cuts = state.cut.get(name) or [len(data)]
                self.wfile.write(data[start:start + cuts.pop(0)])   # then closed (HTTP/1.0)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def put(self, name: str, data: bytes) -> str:
        (self.folder / name).write_bytes(data)
        return self.url(name)


@pytest.fixture()
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "srv").mkdir()
    srv = _Server(tmp_path / "srv")
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)
