r"""Resumable, checksum-verified downloads and atomic zip extraction for dataset archives.

Download (:func:`download`; the ``download`` stage, :mod:`pipeline.stages.download`, fetches into
``resources/``, where the workflow keeps what it fetches):

* the bytes go to ``PATH.part``; a ``.part`` left by an interrupted run is resumed with an HTTP
  ``Range`` request, and when the server ignores ``Range`` (answers ``200``) the file is restarted
  from byte 0;
* connection errors, short reads and ``5xx``/``408``/``429`` answers are retried with exponential
  backoff, each retry resuming where the last one stopped;
* the md5 of the complete file is checked; on a mismatch the file is deleted and
  :class:`ChecksumError` names the URL, both checksums and the config key holding the expected
  one; ``--md5 ""`` skips the check (with a warning);
* ``PATH`` appears (``os.replace`` of the ``.part``) only once the file is complete and verified.

Extraction (:func:`extract`; the ``extract`` stage, :mod:`pipeline.stages.extract`):

The archive is unpacked into a temporary folder beside ``DIR`` (same file system), then each of
its top-level entries is moved into ``DIR`` with ``os.replace``; a top-level folder that already
exists in ``DIR`` (two archives sharing a folder) is merged entry by entry the same way. The marker
file, which lists the archive's members, is written last: a marker means the extraction finished.
A corrupt archive raises a clear error and leaves nothing behind.

The temporary folder (``.<DIR name>.extract-<archive stem>.XXXXXXXX``, up to the archive's
unpacked size, 18 GB for COCO's train2017) is removed on every exit path, SIGTERM included (a
cancelled Snakemake or cluster job: :func:`extract` turns SIGTERM into ``SystemExit`` while it
runs, so its ``finally`` runs). What a SIGKILL or a power cut leaves is removed by the next
extraction of the same archive (:func:`remove_stale_temp`): Snakemake never runs two jobs for
one output at once, so a folder of that archive's name is a dead run's.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pipeline.artifacts import atomic_path

log = logging.getLogger("pipeline.download")

_CHUNK = 1 << 20
#: HTTP statuses worth retrying (the server may recover); every other error status is final
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ChecksumError(RuntimeError):
    """The downloaded file's md5 differs from the configured one (the file was deleted)."""


class DownloadError(RuntimeError):
    """The file could not be downloaded (HTTP error, or retries exhausted)."""


class _ShortRead(Exception):
    """The connection ended before the announced number of bytes arrived."""


def md5sum(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    """Hex md5 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _part_path(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def _content_range_start(header: str | None) -> tuple[int | None, int | None]:
    """``bytes START-END/TOTAL`` or ``bytes */TOTAL`` → (START, TOTAL); unknown parts are
    ``None``."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", header or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _fetch_once(url: str, part: Path, timeout: float, chunk_size: int, progress: bool) -> None:
    """One HTTP request appending to (or restarting) ``part``; returns when the body is whole.

    Raises :class:`_ShortRead` when the connection ends early, ``urllib.error.HTTPError`` for
    error statuses and ``OSError``-family errors for connection problems.
    """
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "lagnh-pipeline (urllib)"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            # the .part already holds every byte (or is longer than the file): let the caller
            # verify it; a bad one fails the checksum and restarts from zero
            start, total = _content_range_start(e.headers.get("Content-Range"))
            if total is not None and total == have:
                return
            log.warning("%s: server refused to resume at byte %d; restarting", url, have)
            part.unlink()
            raise _ShortRead("range not satisfiable") from e
        raise
    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        if have and resp.status == 206:
            start, total = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:
                log.warning("%s: server resumed at byte %s instead of %d; restarting", url,
                            start, have)
                part.unlink()
                raise _ShortRead("bad Content-Range")
            mode = "ab"
            log.info("%s: resuming at byte %d", url, have)
        else:
            if have:
                log.warning("%s: server ignored the Range request (status %d); restarting "
                            "from byte 0", url, resp.status)
            have, mode = 0, "wb"
            total = length
        expected = length  # bytes of this response's body, when announced
        got = 0
        with open(part, mode) as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=part.name[:-5],
                                         disable=not progress, file=sys.stderr,
                                         mininterval=1.0) as bar:
            while True:
                block = resp.read(chunk_size)
                if not block:
                    break
                f.write(block)
                got += len(block)
                bar.update(len(block))
        if expected is not None and got < expected:
            raise _ShortRead(f"got {got} of {expected} bytes")


def download(url: str, out: str | os.PathLike, md5: str = "", *, config_key: str = "",
             retries: int = 5, backoff: float = 2.0, timeout: float = 60.0,
             chunk_size: int = _CHUNK, progress: bool = True) -> Path:
    """Download ``url`` to ``out`` (resumable, retried, md5-verified, renamed into place last).

    Args:
        url: http(s) URL (``file://`` works too, without resuming).
        out: destination file; ``out.part`` holds the bytes while downloading.
        md5: expected hex md5 (case-insensitive); ``""`` skips verification with a warning.
        config_key: the config key holding ``md5``, named in the mismatch error.
        retries: attempts after the first one for connection errors / short reads / 5xx.
        backoff: seconds before the first retry, doubled for each further one (capped at 60 s).
        timeout: socket timeout in seconds for connecting and for each read.
        chunk_size: bytes per read.
        progress: show a tqdm progress bar on stderr.

    Returns:
        ``Path(out)``.

    Raises:
        ChecksumError: md5 mismatch (nothing is left at ``out`` or ``out.part``).
        DownloadError: an HTTP error status, or still failing after ``retries`` retries
            (a partial ``out.part`` is kept so that the next run resumes).
    """
    out = Path(out)
    md5 = (md5 or "").strip().lower()
    key_hint = f"config key '{config_key}'" if config_key else "the md5 for this URL in config.yaml"
    if out.exists():
        if not md5:
            log.info("%s exists (no md5 configured); not downloading again", out)
            return out
        if md5sum(out) == md5:
            log.info("%s exists and its md5 matches; not downloading again", out)
            return out
        log.warning("%s exists but its md5 differs from %s; downloading again", out, md5)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(out)
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout, chunk_size, progress)
            break
        except urllib.error.HTTPError as e:
            if e.code not in _RETRY_STATUS or attempt >= retries:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check the URL in "
                                    "config.yaml (or download the file by hand to "
                                    f"{out})") from e
            err: Exception = e
        except (_ShortRead, urllib.error.URLError, http.client.HTTPException, ConnectionError,
                TimeoutError) as e:
            if attempt >= retries:
                raise DownloadError(f"{url}: download failed after {attempt + 1} attempts "
                                    f"({e}); run again to resume from {part}") from e
            err = e
        wait = min(60.0, backoff * 2 ** attempt)
        attempt += 1
        log.warning("%s: %s; retry %d/%d in %.1f s", url, err, attempt, retries, wait)
        time.sleep(wait)
    if md5:
        actual = md5sum(part)
        if actual != md5:
            part.unlink()
            raise ChecksumError(
                f"{url}: md5 mismatch: expected {md5}, got {actual}; the downloaded file was "
                f"deleted. If the file changed upstream, update {key_hint} (\"\" skips the "
                "check), otherwise run again.")
        log.info("%s: md5 %s verified", out, actual)
    else:
        log.warning("%s: no md5 configured, the download is NOT verified (md5 of what arrived: "
                    "%s; put it in %s to pin it)", out, md5sum(part), key_hint)
    os.replace(part, out)
    return out


def _safe_members(zf: zipfile.ZipFile, archive: Path) -> list[str]:
    names = zf.namelist()
    for name in names:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
            raise ValueError(f"{archive}: member '{name}' would be written outside the "
                             "destination folder; refusing to extract this archive")
    return names


def _move_into(src: Path, dst: Path) -> None:
    """``os.replace`` ``src`` onto ``dst``, merging into an existing folder entry by entry."""
    if dst.is_dir() and src.is_dir() and not dst.is_symlink():
        for child in src.iterdir():
            _move_into(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)


def temp_prefix(dest: Path, archive: Path) -> str:
    """Name prefix of ``archive``'s temporary extraction folders beside ``dest``."""
    return f".{dest.name}.extract-{archive.stem}."


def remove_stale_temp(dest: str | os.PathLike, archive: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders an interrupted extraction of ``archive`` left beside
    ``dest`` (and those of the former naming, ``.<DIR name>.extract-XXXXXXXX``); returns them."""
    dest, archive = Path(dest).resolve(), Path(archive)
    if not dest.parent.is_dir():
        return []
    ours = temp_prefix(dest, archive)
    legacy = re.compile(rf"^\.{re.escape(dest.name)}\.extract-[A-Za-z0-9_]{{8}}$")
    stale = [p for p in dest.parent.iterdir() if p.is_dir() and not p.is_symlink()
             and (p.name.startswith(ours) or legacy.match(p.name))]
    for p in stale:
        log.warning("removing %s, left by an interrupted extraction", p)
        shutil.rmtree(p, ignore_errors=True)
    return stale


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit(143)`` (so ``finally`` blocks run); the former
    handler is restored on leaving. Does nothing outside the main thread (Python allows signal
    handlers only there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _extract_via_temp(archive: Path, dest: Path) -> list[str]:
    """Unpack into a fresh temporary folder beside ``dest``, then move its entries into
    ``dest``; the folder is removed whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest, archive), dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                names = _safe_members(zf, archive)
                for info in tqdm(zf.infolist(), desc=f"extract {archive.name}", unit="file",
                                 file=sys.stderr, mininterval=1.0):
                    zf.extract(info, tmp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
                NotImplementedError) as e:
            raise ValueError(f"{archive}: corrupt or unreadable zip archive ({e}); delete it "
                             "and run the download again") from e
        except OSError as e:
            raise ValueError(f"{archive}: extraction into {dest} failed ({e}); check free "
                             "disk space and permissions") from e
        for entry in sorted(tmp.iterdir()):
            _move_into(entry, dest / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return names


def extract(archive: str | os.PathLike, dest: str | os.PathLike,
            marker: str | os.PathLike | None = None) -> list[str]:
    """Unpack a zip archive into ``dest`` atomically, then write ``marker`` listing its members.

    The archive is extracted (CRC-checked) into a temporary folder beside ``dest``; only when
    that succeeded are its top-level entries moved into ``dest`` with ``os.replace`` (merging
    into folders that already exist). On any error the temporary folder is removed and
    ``dest`` is untouched; SIGTERM removes it too (:func:`sigterm_as_exit`), and folders a
    killed earlier run left are removed first (:func:`remove_stale_temp`).

    Args:
        archive: the zip file.
        dest: destination folder (created if needed).
        marker: file written last (default ``dest/.<archive name>.extracted``): a comment line
            naming the archive, then one member name per line.

    Returns:
        The archive's member names.

    Raises:
        ValueError: the archive is missing, not a zip, corrupt, or has unsafe member paths.
    """
    archive, dest = Path(archive), Path(dest).resolve()
    marker = Path(marker) if marker is not None else dest / f".{archive.stem}.extracted"
    if not archive.is_file():
        raise ValueError(f"{archive}: archive not found")
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(dest, archive)
    with sigterm_as_exit():
        names = _extract_via_temp(archive, dest)
    with atomic_path(marker) as t:
        t.write_text(f"# extracted from {archive} ({len(names)} members)\n"
                     + "".join(f"{n}\n" for n in names))
    log.info("extracted %d members of %s into %s", len(names), archive, dest)
    return names

