"""Fetching a file from a list of mirrors, verified before it takes its final name.

Each source is tried in turn: an http(s) base URL (with timeouts and retries with backoff on
connection errors, truncated bodies and 5xx answers) or a local directory. Bytes stream into a
hidden temporary file beside the target, are gunzipped and hashed on the way, and the file is
renamed into place only when the SHA-256 of its content is the expected one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nnctl.errors import DownloadError
from nnctl.filemode import set_mode_for

MIRROR_ENV = "NNCTL_MNIST_MIRROR"
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 16


class DownloadObserver(Protocol):
    """Receives progress, so a front end can draw it; the library draws nothing."""

    def start(self, label: str, total: int | None) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


class _Silent:
    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL before moving to the next mirror."""

    attempts: int = 3
    backoff: float = 0.5
    connect_timeout: float = 10.0
    read_timeout: float = 30.0


class _SourceFailed(Exception):
    """This source cannot deliver the file; try the next one."""


class _Retryable(Exception):
    """A transient failure: the same URL may work on another attempt."""


def mirror_sources() -> list[str]:
    """$NNCTL_MNIST_MIRROR as the only source when set, else the public mirrors in order."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return [value] if value else list(DEFAULT_MIRRORS)


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def source_location(source: str, filename: str) -> str:
    if is_url(source):
        return source.rstrip("/") + "/" + filename
    return str(Path(source.removeprefix("file://")) / filename)


class _VerifyingWriter:
    """A temporary file that gunzips (when the bytes are gzip) and hashes what it is given."""

    def __init__(self, dest: Path, sha256: str):
        self.dest = dest
        self.expected = sha256
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        set_mode_for(fd, dest)
        self.temp = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.digest = hashlib.sha256()
        self.inflater: zlib._Decompress | None = None
        self.head = b""
        self.raw_bytes = 0

    def write(self, chunk: bytes) -> None:
        if self.raw_bytes == 0 and len(self.head) < 2:
            self.head += chunk
            if len(self.head) < 2:
                return
            chunk, self.head = self.head, self.head[:64]
            if chunk.startswith(GZIP_MAGIC):
                self.inflater = zlib.decompressobj(wbits=31)
        self.raw_bytes += len(chunk)
        try:
            data = self.inflater.decompress(chunk) if self.inflater else chunk
        except zlib.error as error:
            raise _SourceFailed(f"corrupt gzip data ({error})") from None
        self.digest.update(data)
        self.file.write(data)

    def commit(self) -> None:
        """Rename into place if the content verifies; raise otherwise."""
        self.file.close()
        if self.inflater is not None and not self.inflater.eof:
            raise _Retryable("incomplete gzip stream (truncated download)")
        if self.digest.hexdigest() != self.expected:
            if self.inflater is None and self.head.lstrip().startswith(b"<"):
                raise _SourceFailed("served an HTML page, not the file")
            raise _SourceFailed("content does not match the expected SHA-256 digest")
        os.replace(self.temp, self.dest)

    def discard(self) -> None:
        self.file.close()
        self.temp.unlink(missing_ok=True)


def fetch(
    filename: str,
    sha256: str,
    dest: Path,
    sources: list[str],
    observer: DownloadObserver | None = None,
    policy: RetryPolicy = RetryPolicy(),
    mirror_env: str = MIRROR_ENV,
    title: str = "MNIST",
) -> None:
    """Put the verified content of `filename` at `dest`, trying each source in order;
    `mirror_env` and `title` name the dataset's mirror variable and files in the error."""
    observer = observer or _Silent()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(dest.parent, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise DownloadError(
            f"{dest.parent}: cannot write there ({error.strerror}); choose a writable "
            "data directory with --data-dir or NNCTL_DATA_DIR"
        ) from None
    failures = []
    for source in sources:
        location = source_location(source, filename)
        try:
            if is_url(source):
                _fetch_url(location, sha256, dest, observer, policy)
            else:
                _copy_local(Path(location), sha256, dest, observer)
            return
        except _SourceFailed as failure:
            failures.append(f"{location}: {failure}")
    tried = "; ".join(failures)
    raise DownloadError(
        f"could not get {filename} from any mirror ({tried}). Set {mirror_env} to a mirror URL "
        f"or a directory holding the four {title} files, or use --data-dir to point at a data "
        "directory that already has them"
    )


def _fetch_url(
    url: str, sha256: str, dest: Path, observer: DownloadObserver, policy: RetryPolicy
) -> None:
    import requests

    last = "no attempt made"
    for attempt in range(policy.attempts):
        if attempt:
            time.sleep(policy.backoff * 2 ** (attempt - 1))
        try:
            _fetch_once(requests, url, sha256, dest, observer, policy)
            return
        except _Retryable as error:
            last = str(error)
        except requests.Timeout:
            last = "timed out"
        except requests.RequestException as error:
            last = f"connection failed ({type(error).__name__})"
    raise _SourceFailed(f"{last}, after {policy.attempts} attempts")


def _fetch_once(requests, url, sha256, dest, observer, policy) -> None:
    timeout = (policy.connect_timeout, policy.read_timeout)
    with requests.get(url, stream=True, timeout=timeout) as response:
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise _SourceFailed(f"HTTP {response.status_code}")
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        writer = _VerifyingWriter(dest, sha256)
        observer.start(url.rsplit("/", 1)[-1], total)
        try:
            for chunk in response.iter_content(CHUNK):
                writer.write(chunk)
                observer.advance(len(chunk))
            encoded = response.headers.get("Content-Encoding", "identity") != "identity"
            if total is not None and not encoded and writer.raw_bytes < total:
                raise _Retryable(f"truncated: {writer.raw_bytes} of {total} bytes")
            writer.commit()
        finally:
            writer.discard()
            observer.finish()


def _copy_local(path: Path, sha256: str, dest: Path, observer: DownloadObserver) -> None:
    if not path.is_file():
        plain = path.with_suffix("") if path.suffix == ".gz" else path
        if not plain.is_file():
            raise _SourceFailed("no such file")
        path = plain
    writer = _VerifyingWriter(dest, sha256)
    observer.start(path.name, path.stat().st_size)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK * 16):
                writer.write(chunk)
                observer.advance(len(chunk))
        try:
            writer.commit()
        except _Retryable as error:
            raise _SourceFailed(str(error)) from None
    except OSError as error:
        raise _SourceFailed(f"cannot read ({error.strerror})") from None
    finally:
        writer.discard()
        observer.finish()
