"""Download (resume, retries, checksum) and zip extraction against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.data import archives as dl
from pipeline.stages import download as download_stage
from pipeline.stages import extract as extract_stage


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


MEMBERS = {"annotations/a.json": b'{"x": 1}' * 50, "annotations/b.json": b"[]",
           "images/0001.jpg": bytes(range(256)) * 400}
PAYLOAD = make_zip(MEMBERS)


class Server:
    """A 127.0.0.1 HTTP server for ``files`` that honours ``Range`` and can misbehave:
    ``cut_first`` sends only half of the first full response and drops the connection;
    ``ignore_range`` answers every request with the whole file (status 200)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_first = False
        self.ignore_range = False
        self.requests: list[dict[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.requests.append({"path": self.path, "range": rng})
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first and start == 0:
                    server.cut_first = False
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = Server({"/data.zip": PAYLOAD})
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_verifies_and_renames(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "data.zip"
    assert dl.download(server.url("/data.zip"), out, md5(PAYLOAD), progress=False) == out
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "data.zip.part").exists()
    # a verified file is not fetched again
    n = len(server.requests)
    dl.download(server.url("/data.zip"), out, md5(PAYLOAD), progress=False)
    assert len(server.requests) == n


def test_resume_after_cut_connection(server: Server, tmp_path: Path) -> None:
    server.cut_first = True
    out = tmp_path / "data.zip"
    dl.download(server.url("/data.zip"), out, md5(PAYLOAD), backoff=0.01, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert server.requests[0]["range"] is None
    assert server.requests[1]["range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_resume_from_leftover_part_file(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(PAYLOAD[:1000])
    dl.download(server.url("/data.zip"), out, md5(PAYLOAD), progress=False)
    assert out.read_bytes() == PAYLOAD
    assert server.requests == [{"path": "/data.zip", "range": "bytes=1000-"}]


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    server.ignore_range = True
    out = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(b"stale bytes that must not survive")
    dl.download(server.url("/data.zip"), out, md5(PAYLOAD), progress=False)
    assert out.read_bytes() == PAYLOAD
    assert server.requests[0]["range"] is not None


def test_complete_part_file_gets_416_and_is_verified(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "data.zip"
    (tmp_path / "data.zip.part").write_bytes(PAYLOAD)
    dl.download(server.url("/data.zip"), out, md5(PAYLOAD), progress=False)
    assert out.read_bytes() == PAYLOAD
    assert len(server.requests) == 1  # not restarted


def test_checksum_mismatch_leaves_nothing(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "data.zip"
    url = server.url("/data.zip")
    with pytest.raises(dl.ChecksumError) as err:
        dl.download(url, out, "0" * 32, config_key="datasets.coco.downloads.train.md5",
                    progress=False)
    msg = str(err.value)
    for part in (url, "0" * 32, md5(PAYLOAD), "datasets.coco.downloads.train.md5"):
        assert part in msg
    assert list(tmp_path.iterdir()) == []


def test_empty_md5_skips_verification_with_warning(server: Server, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "data.zip"
    with caplog.at_level("WARNING", logger="pipeline.download"):
        dl.download(server.url("/data.zip"), out, "", progress=False)
    assert out.read_bytes() == PAYLOAD
    assert "NOT verified" in caplog.text


def test_http_404_is_not_retried(server: Server, tmp_path: Path) -> None:
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(server.url("/missing.zip"), tmp_path / "x.zip", "", backoff=0.01,
                    progress=False)
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_retries_then_fails(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens on this port now
    with pytest.raises(dl.DownloadError, match="after 3 attempts"):
        dl.download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", "", retries=2,
                    backoff=0.01, timeout=2, progress=False)


def test_cli_download_and_extract(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "data.zip"
    assert download_stage.main(["--url", server.url("/data.zip"), "--md5", md5(PAYLOAD),
                                "--out", str(out)]) == 0
    assert download_stage.main(["--url", server.url("/data.zip"), "--md5", "f" * 32,
                                "--out", str(tmp_path / "bad.zip")]) == 1
    dest, marker = tmp_path / "coco", tmp_path / "coco" / ".data.extracted"
    assert extract_stage.main(["--archive", str(out), "--dest", str(dest),
                               "--marker", str(marker)]) == 0
    assert (dest / "images" / "0001.jpg").read_bytes() == MEMBERS["images/0001.jpg"]


def test_extract_writes_members_and_marker(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(PAYLOAD)
    dest = tmp_path / "coco"
    (dest / "annotations").mkdir(parents=True)
    (dest / "annotations" / "other.json").write_text("kept")  # another archive's member
    marker = dest / ".a.extracted"
    names = dl.extract(archive, dest, marker)
    assert sorted(names) == sorted(MEMBERS)
    for name, data in MEMBERS.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "annotations" / "other.json").read_text() == "kept"
    listed = [ln for ln in marker.read_text().splitlines() if not ln.startswith("#")]
    assert sorted(listed) == sorted(MEMBERS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "coco"]  # no temp dir left


def test_corrupt_zip_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "coco"
    for name, data in (("garbage.zip", b"not a zip at all" * 10),
                       ("truncated.zip", PAYLOAD[: len(PAYLOAD) // 2]),
                       ("flipped.zip", PAYLOAD[:200] + bytes(b ^ 0xFF for b in PAYLOAD[200:400])
                        + PAYLOAD[400:])):
        archive = tmp_path / name
        archive.write_bytes(data)
        with pytest.raises(ValueError, match="corrupt"):
            dl.extract(archive, dest, dest / f".{name}.extracted")
        assert list(dest.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["coco", "garbage.zip", "truncated.zip", "flipped.zip"])


def test_extract_rejects_paths_outside_dest(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    archive.write_bytes(make_zip({"../escape.txt": b"x"}))
    with pytest.raises(ValueError, match="outside"):
        dl.extract(archive, tmp_path / "d", tmp_path / "d" / ".m")
    assert not (tmp_path / "escape.txt").exists()


# A stage process that extracts slowly (each member waits), so a test can stop it midway.
_SLOW_EXTRACT = """
import sys, time, zipfile
_orig = zipfile.ZipFile.extract
def _slow(self, member, path=None, pwd=None):
    out = _orig(self, member, path, pwd)
    time.sleep(0.2)
    return out
zipfile.ZipFile.extract = _slow
from pipeline.stages.extract import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_sigterm_during_extraction_leaves_no_temp_folder(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    archive = tmp_path / "big.zip"
    archive.write_bytes(make_zip({f"images/{i:04d}.jpg": b"x" * 100 for i in range(200)}))
    dest = tmp_path / "coco"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXTRACT, "--archive", str(archive), "--dest", str(dest)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".coco.extract-big.*/images/*")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".coco.extract-big.*")), "the extraction never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.zip", "coco"]
    assert not (dest / ".big.extracted").exists()


def test_next_run_removes_stale_temp_folders(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(PAYLOAD)
    dest = tmp_path / "coco"
    dead = tmp_path / ".coco.extract-a.k3j4h5g6"          # what a SIGKILLed run left
    legacy = tmp_path / ".coco.extract-abcd1234"          # the former naming
    other = tmp_path / ".coco.extract-a2.zzzzzzzz"        # another archive's: may be running
    for d in (dead, legacy, other):
        (d / "train2017").mkdir(parents=True)
        (d / "train2017" / "x.jpg").write_bytes(b"x")
    dl.extract(archive, dest, dest / ".a.extracted")
    assert not dead.exists() and not legacy.exists()
    assert (other / "train2017" / "x.jpg").exists()
    assert (dest / ".a.extracted").exists()
