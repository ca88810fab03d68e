"""Fetching a file from a list of mirrors, verified before it takes its final name.

Each source is tried in turn: an http(s) base URL (with timeouts and retries with backoff on
connection errors, truncated bodies and 5xx answers) or a local directory. Bytes stream into a
hidden temporary file beside the target, are gunzipped and hashed on the way, and the file is
renamed into place only when the SHA-256 of its content is the expected one.

A mirror that does not answer at all is left for the next one at once (no retries: a silent
server costs one timeout, not three). When the expected size is known, reading stops as soon
as a mirror sends more (an endless or bombing body fills nothing). A full disk is said as
such, never blamed on the mirror; partial files left by a killed process are removed by the
next download of the same file. Each mirror tried, each retry and its reason go to the
observer's `note` and to the `nnctl.download` logger.
"""

from __future__ import annotations

import glob
import hashlib
import logging
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
STALE_SECONDS = 30.0  # a partial file untouched this long, of a process gone, is garbage
log = logging.getLogger("nnctl.download")
log.addHandler(logging.NullHandler())  # a library logs only where the application says


class DownloadObserver(Protocol):
    """Receives progress, so a front end can draw it; the library draws nothing."""

    def start(self, label: str, total: int | None) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...

    # Optional: `note(message, retry)` hears which mirror is tried (retry False) and each
    # retry or failover with its reason (retry True).


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
    connect_timeout: float = 5.0
    read_timeout: float = 15.0


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


def _note(observer: DownloadObserver, message: str, retry: bool = False) -> None:
    (log.warning if retry else log.info)(message)
    note = getattr(observer, "note", None)
    if note is not None:
        note(message, retry)


class _VerifyingWriter:
    """A temporary file that gunzips (when the bytes are gzip) and hashes what it is given,
    refusing more than `size` bytes of content when the size is known."""

    def __init__(self, dest: Path, sha256: str, size: int | None = None):
        self.dest = dest
        self.expected = sha256
        self.size = size
        try:
            fd, name = tempfile.mkstemp(prefix=_partial_prefix(dest), suffix=".part",
                                        dir=dest.parent)
        except OSError as error:
            raise _write_error(dest, error) from None
        set_mode_for(fd, dest)
        self.temp = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.digest = hashlib.sha256()
        self.inflater: zlib._Decompress | None = None
        self.head = b""
        self.raw_bytes = 0
        self.content_bytes = 0

    @property
    def raw_limit(self) -> int | None:
        """The most bytes a mirror may send: deflate adds at most 5 bytes per 16 KiB block
        to incompressible data, plus the gzip header."""
        return None if self.size is None else self.size + self.size // 1000 + 1024

    def write(self, chunk: bytes) -> None:
        if self.raw_bytes == 0 and len(self.head) < 2:
            self.head += chunk
            if len(self.head) < 2:
                return
            chunk, self.head = self.head, self.head[:64]
            if chunk.startswith(GZIP_MAGIC):
                self.inflater = zlib.decompressobj(wbits=31)
        self.raw_bytes += len(chunk)
        limit = self.raw_limit if self.inflater else self.size
        if limit is not None and self.raw_bytes > limit:
            raise _SourceFailed(f"sent more than the {limit:,} bytes the file can take; stopped")
        if self.inflater is None:
            self._take(chunk)
            return
        while chunk:
            room = None if self.size is None else self.size - self.content_bytes + 1
            try:
                data = (self.inflater.decompress(chunk, room) if room
                        else self.inflater.decompress(chunk))
            except zlib.error as error:
                raise _SourceFailed(f"corrupt gzip data ({error})") from None
            self._take(data)
            chunk = self.inflater.unconsumed_tail

    def _take(self, data: bytes) -> None:
        self.content_bytes += len(data)
        if self.size is not None and self.content_bytes > self.size:
            raise _SourceFailed(f"decompresses to more than the {self.size:,} bytes of the "
                                "file; stopped")
        self.digest.update(data)
        try:
            self.file.write(data)
        except OSError as error:
            raise _write_error(self.dest, error) from None

    def commit(self) -> None:
        """Rename into place if the content verifies; raise otherwise."""
        try:
            self.file.close()
        except OSError as error:
            raise _write_error(self.dest, error) from None
        if self.inflater is not None and not self.inflater.eof:
            raise _Retryable("incomplete gzip stream (truncated download)")
        if self.digest.hexdigest() != self.expected:
            if self.inflater is None and self.head.lstrip().startswith(b"<"):
                raise _SourceFailed("served an HTML page, not the file")
            raise _SourceFailed("content does not match the expected SHA-256 digest")
        try:
            os.replace(self.temp, self.dest)
        except OSError as error:
            raise _write_error(self.dest, error) from None

    def discard(self) -> None:
        try:
            self.file.close()  # flushing into a full disk fails again: nothing to keep
        except OSError:
            pass
        self.temp.unlink(missing_ok=True)


def _write_error(dest: Path, error: OSError) -> DownloadError:
    """A failure to write the cache: the disk's fault or the directory's, never a mirror's."""
    import errno

    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return DownloadError(
            f"{dest.parent}: the disk is full ({error.strerror}) while writing {dest.name}; "
            "the partial file was removed. Free some space, or choose another data "
            "directory with --data-dir or NNCTL_DATA_DIR")
    return DownloadError(f"{dest.parent}: cannot write {dest.name} there ({error.strerror}); "
                         "choose a writable data directory with --data-dir or NNCTL_DATA_DIR")


def _partial_prefix(dest: Path) -> str:
    return f".{dest.name}.{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_partials(dest: Path) -> list[Path]:
    """Delete partial downloads of `dest` left by killed processes: files of a process that
    is gone (or of unknown process), untouched for STALE_SECONDS. Returns what was removed."""
    removed = []
    now = time.time()
    for partial in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        middle = partial.name[len(dest.name) + 2:-len(".part")]
        pid = middle.split("-", 1)[0]
        if pid.isdigit() and "-" in middle and _process_alive(int(pid)):
            continue
        try:
            if now - partial.stat().st_mtime < STALE_SECONDS:
                continue
            partial.unlink()
        except OSError:
            continue  # another process cleaned it, or the directory is read-only
        removed.append(partial)
    return removed


def fetch(
    filename: str,
    sha256: str,
    dest: Path,
    sources: list[str],
    observer: DownloadObserver | None = None,
    policy: RetryPolicy = RetryPolicy(),
    mirror_env: str = MIRROR_ENV,
    title: str = "MNIST",
    size: int | None = None,
) -> None:
    """Put the verified content of `filename` at `dest`, trying each source in order;
    `mirror_env` and `title` name the dataset's mirror variable and files in the error.

    `size`, when known, is the exact size of the content: a source sending more is cut off."""
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
    for stale in remove_stale_partials(dest):
        log.info("removed %s, left by an interrupted download", stale)
    failures = []
    for number, source in enumerate(sources):
        location = source_location(source, filename)
        _note(observer, f"{filename}: trying {location}")
        try:
            if is_url(source):
                _fetch_url(location, sha256, dest, observer, policy, size)
            else:
                _copy_local(Path(location), sha256, dest, observer, size)
            return
        except _SourceFailed as failure:
            failures.append((location, str(failure)))
            if number + 1 < len(sources):
                _note(observer, f"{location}: {failure}; trying the next mirror", retry=True)
    raise DownloadError(_advice(filename, sources, failures, mirror_env, title))


def _advice(filename: str, sources: list[str], failures: list[tuple[str, str]],
            mirror_env: str = MIRROR_ENV, title: str = "MNIST") -> str:
    """Why nothing worked, and what to do: blame the mirror variable when it was the source."""
    tried = "; ".join(f"{where}: {why}" for where, why in failures)
    configured = os.environ.get(mirror_env, "").strip()
    if configured and sources == [configured]:
        if not is_url(configured) and not Path(configured.removeprefix("file://")).is_dir():
            what = ("which is neither an http:// or https:// URL nor an existing directory"
                    if "://" not in configured or configured.startswith("file://")
                    else "which is not an http:// or https:// URL")
            return (f"could not get {filename}: {mirror_env} is set to {configured!r}, {what}; "
                    f"correct it, or unset it to use the public mirrors")
        return (f"could not get {filename} from {mirror_env}={configured} ({tried}); correct "
                f"{mirror_env} (a mirror URL, or a directory holding the four {title} files, "
                f"gzipped or not), or unset it to use the public mirrors")
    return (f"could not get {filename} from any mirror ({tried}). Offline? Set {mirror_env} "
            f"to a directory holding the four {title} files (the .gz downloads or the "
            "decompressed files) or to a mirror URL; or use --data-dir to point at a data "
            "directory that already holds them")


def _fetch_url(url: str, sha256: str, dest: Path, observer: DownloadObserver,
               policy: RetryPolicy, size: int | None = None) -> None:
    import requests

    last = "no attempt made"
    for attempt in range(policy.attempts):
        if attempt:
            delay = policy.backoff * 2 ** (attempt - 1)
            _note(observer, f"{url}: {last}; retrying in {delay:g} s (attempt {attempt + 1} "
                            f"of {policy.attempts})", retry=True)
            time.sleep(delay)
        try:
            _fetch_once(requests, url, sha256, dest, observer, policy, size)
            return
        except _Retryable as error:
            last = str(error)
        except requests.Timeout:
            last = "timed out"
        except requests.RequestException as error:
            last = f"connection failed ({type(error).__name__})"
    raise _SourceFailed(f"{last}, after {policy.attempts} attempts")


def _connect(requests, url: str, policy: RetryPolicy):
    """The response's headers; a server that does not answer in time is given up at once."""
    try:
        return requests.get(url, stream=True,
                            timeout=(policy.connect_timeout, policy.read_timeout))
    except requests.ConnectTimeout:
        raise _SourceFailed(f"no connection within {policy.connect_timeout:g} s") from None
    except requests.ReadTimeout:
        raise _SourceFailed(f"connected, but no answer within {policy.read_timeout:g} s"
                            ) from None


def _fetch_once(requests, url, sha256, dest, observer, policy, size=None) -> None:
    with _connect(requests, url, policy) as response:
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise _SourceFailed(f"HTTP {response.status_code}")
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        writer = _VerifyingWriter(dest, sha256, size)
        if total is not None and writer.raw_limit is not None and total > writer.raw_limit:
            writer.discard()
            raise _SourceFailed(f"announces {total:,} bytes, more than the file can take")
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


def _local_candidates(path: Path) -> list[Path]:
    """NAME.gz, NAME, and the NAME.idx3-ubyte spelling some archives use."""
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    dotted = plain.with_name(plain.name.replace("-idx", ".idx"))
    return [path, plain, dotted, dotted.with_name(dotted.name + ".gz")]


def _copy_local(path: Path, sha256: str, dest: Path, observer: DownloadObserver,
                size: int | None = None) -> None:
    found = next((p for p in _local_candidates(path) if p.is_file()), None)
    if found is None:
        raise _SourceFailed("no such directory" if not path.parent.is_dir() else "no such file")
    path = found
    writer = _VerifyingWriter(dest, sha256, size)
    observer.start(path.name, path.stat().st_size)
    try:
        try:
            handle = open(path, "rb")
        except OSError as error:
            raise _SourceFailed(f"cannot read ({error.strerror})") from None
        with handle:
            while True:
                try:
                    chunk = handle.read(CHUNK * 16)
                except OSError as error:
                    raise _SourceFailed(f"cannot read ({error.strerror})") from None
                if not chunk:
                    break
                writer.write(chunk)
                observer.advance(len(chunk))
        try:
            writer.commit()
        except _Retryable as error:
            raise _SourceFailed(str(error)) from None
    finally:
        writer.discard()
        observer.finish()
