"""Downloads against full disks, endless bodies, killed runs, silent servers and a wrong
$NNCTL_MNIST_MIRROR: one clear line each, nothing partial left behind."""

import gzip
import hashlib
import os
import socket
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.data.download import RetryPolicy, fetch
from nnctl.data.idx import encode_idx
from nnctl.data.mnist import MnistFile, ensure_file
from nnctl.errors import DataError, DownloadError

FAST = RetryPolicy(attempts=3, backoff=0.01, connect_timeout=2, read_timeout=2)
NAME = "train-labels-idx1-ubyte"


@pytest.fixture
def folder(tmp_path):
    """A mirror folder with one gzipped IDX file of 100 KB, its content and digest."""
    content = encode_idx(np.random.default_rng(1).integers(0, 10, 100_000).astype(np.uint8))
    root = tmp_path / "mirror"
    root.mkdir()
    (root / f"{NAME}.gz").write_bytes(gzip.compress(content))
    return root, content, hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("kind", ["http", "folder"])
def test_a_full_disk_is_said_with_the_directory_and_leaves_no_partial(tmp_path, folder, serve,
                                                                      full_disk, kind):
    root, content, digest = folder
    disk = full_disk(32)
    source = serve(root).url if kind == "http" else str(root)
    dest = disk / NAME
    with pytest.raises(DownloadError) as error:
        fetch(f"{NAME}.gz", digest, dest, [source], policy=FAST, size=len(content))
    message = str(error.value)
    assert message.startswith(f"{disk}: the disk is full"), message
    assert "cannot read" not in message and "mirror" not in message
    assert os.listdir(disk) == []


def endless_gzip_server():
    """A server answering every GET with a gzip body that never ends (zeros compress 1000:1)."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent = [0]

    def serve_one(conn):
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\r\n")
            packer = gzip.GzipFile(fileobj=Sender(conn, sent), mode="wb")
            zeros = bytes(1 << 20)
            try:
                while True:
                    packer.write(zeros)
            except OSError:
                return

    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return listener, sent


class Sender:
    def __init__(self, conn, sent):
        self.conn, self.sent = conn, sent

    def write(self, data):
        self.conn.sendall(data)
        self.sent[0] += len(data)
        return len(data)

    def flush(self):
        pass


def test_an_endless_body_is_cut_at_the_known_size(tmp_path, folder):
    _, content, digest = folder
    listener, sent = endless_gzip_server()
    dest = tmp_path / "cache" / NAME
    try:
        with pytest.raises(DownloadError, match="more than the 100,008 bytes"):
            fetch(f"{NAME}.gz", digest, dest, [f"http://127.0.0.1:{listener.getsockname()[1]}/"],
                  policy=FAST, size=len(content))
    finally:
        listener.close()
    assert os.listdir(dest.parent) == []
    assert sent[0] < 10_000_000  # today's code reads on without end


def test_a_stale_partial_of_a_killed_run_is_removed_by_the_next(tmp_path, folder):
    root, content, digest = folder
    dest = tmp_path / "cache" / NAME
    dest.parent.mkdir()
    old = time.time() - 3600
    leftovers = [dest.parent / f".{NAME}.abc123.part", dest.parent / f".{NAME}.999999999-x.part"]
    for partial in leftovers:
        partial.write_bytes(b"\0" * 1000)
        os.utime(partial, (old, old))
    live = dest.parent / f".{NAME}.{os.getpid()}-live.part"  # a download running right now
    live.write_bytes(b"\0")
    fetch(f"{NAME}.gz", digest, dest, [str(root)], policy=FAST, size=len(content))
    assert sorted(os.listdir(dest.parent)) == sorted([NAME, live.name])


def test_a_corrupt_cached_file_in_a_read_only_directory_is_a_clear_error(tmp_path, folder):
    root, content, digest = folder
    spec = MnistFile(NAME, digest, (100_000,))
    cached = tmp_path / "data" / "mnist" / NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content[:-1] + b"\xff")
    cached.parent.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes anywhere: make the directory immutable instead
            chattr(cached.parent, "+i")
        with pytest.raises(DataError, match="corrupt, and cannot be replaced there"):
            ensure_file(spec, tmp_path / "data", [str(root)])
    finally:
        if os.geteuid() == 0:
            chattr(cached.parent, "-i")
        cached.parent.chmod(0o755)


def chattr(path, flag):
    import subprocess

    try:
        done = subprocess.run(["chattr", flag, str(path)], capture_output=True)
    except FileNotFoundError:
        done = None
    if flag == "+i" and (done is None or done.returncode):
        pytest.skip("cannot make a directory unwritable for root here (chattr +i)")


class Notes:
    def __init__(self):
        self.lines = []

    def start(self, label, total):
        pass

    def advance(self, nbytes):
        pass

    def finish(self):
        pass

    def note(self, message, retry):
        self.lines.append((message, retry))


def test_a_silent_server_is_left_after_one_timeout_and_each_step_is_told(tmp_path, folder,
                                                                         serve, caplog):
    root, content, digest = folder
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    good = serve(root)
    notes = Notes()
    policy = RetryPolicy(attempts=3, backoff=0.01, connect_timeout=1, read_timeout=0.5)
    dest = tmp_path / "cache" / NAME
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    started = time.monotonic()
    with caplog.at_level("INFO", logger="nnctl.download"):
        fetch(f"{NAME}.gz", digest, dest, [url, good.url], notes, policy, len(content))
    silent.close()
    assert time.monotonic() - started < 1.4  # one read timeout, not three
    assert dest.read_bytes() == content
    text = [m for m, _ in notes.lines]
    assert text[0] == f"{NAME}.gz: trying {url}{NAME}.gz"
    assert "no answer within 0.5 s; trying the next mirror" in text[1] and notes.lines[1][1]
    assert text[2] == f"{NAME}.gz: trying {good.url}{NAME}.gz"
    assert [r.getMessage() for r in caplog.records] == text


def test_each_retry_is_told_with_its_reason(tmp_path, folder, serve):
    root, content, digest = folder
    mirror = serve(root)
    mirror.faults[f"/{NAME}.gz"] = [503]
    notes = Notes()
    fetch(f"{NAME}.gz", digest, tmp_path / NAME, [mirror.url], notes, FAST, len(content))
    assert any("HTTP 503; retrying in" in m and "attempt 2 of 3" in m for m, _ in notes.lines)


@pytest.mark.parametrize("value, expected", [
    ("example.org/mnist", "neither an http:// or https:// URL nor an existing directory"),
    ("ftp://example.org/mnist", "not an http:// or https:// URL"),
    ("404", "HTTP 404"),
])
def test_a_wrong_mirror_variable_is_named_instead_of_suggested(tmp_path, folder, serve,
                                                                 monkeypatch, value, expected):
    if value == "404":
        value = serve(tmp_path).url + "nothing/"
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", value)
    result = CliRunner().invoke(app, ["data", "download", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert expected in result.output and "NNCTL_MNIST_MIRROR" in result.output
    assert "Set NNCTL_MNIST_MIRROR" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("spelling", ["{}.gz", "{}", "{dotted}"])
def test_a_folder_of_the_canonical_files_gzipped_or_not_is_a_mirror(tmp_path, folder, spelling):
    _, content, digest = folder
    root = tmp_path / "plain"
    root.mkdir()
    name = spelling.format(NAME, dotted=NAME.replace("-idx", ".idx"))
    (root / name).write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    fetch(f"{NAME}.gz", digest, tmp_path / NAME, [str(root)], policy=FAST, size=len(content))
    assert (tmp_path / NAME).read_bytes() == content


def test_data_info_shows_file_names_not_truncated_paths(tmp_path):
    deep = tmp_path / ("a-rather-long-directory-name-" * 4) / "data"
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(deep)],
                                env={"COLUMNS": "80"})
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    assert all(name in result.output for name in names), result.output


def test_the_cli_tells_each_retry_on_stderr(tmp_path, shared_mnist, serve,
                                                       monkeypatch):
    mirror = serve(shared_mnist)
    mirror.faults["/t10k-labels-idx1-ubyte.gz"] = [503]
    monkeypatch.setenv("NNCTL_MNIST_MIRROR", mirror.url)
    result = CliRunner().invoke(app, ["data", "download", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (f"{mirror.url}t10k-labels-idx1-ubyte.gz: HTTP 503; retrying in 0.5 s (attempt 2 "
            "of 3)") in result.stderr
