"""The real `requests` path against a local HTTP server with scripted faults, for every
registered dataset: each test runs once per dataset, through its cache folder and messages."""

import gzip
import hashlib

import numpy as np
import pytest

from nnctl.data.datasets import DATASETS, DataFile
from nnctl.data.download import RetryPolicy
from nnctl.data.idx import encode_idx
from nnctl.data.mnist import MnistFile, ensure_file
from nnctl.errors import DownloadError

FAST = RetryPolicy(attempts=3, backoff=0.01, connect_timeout=2, read_timeout=2)
NAME = "train-labels-idx1-ubyte"


@pytest.fixture(params=list(DATASETS))
def dataset(request):
    return DATASETS[request.param]


@pytest.fixture
def folder(tmp_path, dataset):
    """A mirror folder with one small gzipped IDX file, and that file's digest."""
    content = encode_idx(np.arange(200, dtype=np.uint8) % 10)
    root = tmp_path / "mirror"
    root.mkdir()
    (root / f"{NAME}.gz").write_bytes(gzip.compress(content))
    return root, content, hashlib.sha256(content).hexdigest()


@pytest.fixture
def cache(dataset):
    """cache(tmp_path) -> where the dataset's cache keeps the file."""
    return lambda tmp_path: tmp_path / "data" / dataset.name / NAME


@pytest.fixture
def fetch(dataset):
    """The download as the dataset's cache does it: fetch(archive, digest, dest, sources)."""

    def get(filename, sha256, dest, sources, policy=FAST, shape=(200,)):
        spec = DataFile(filename.removesuffix(".gz"), sha256, shape)
        return ensure_file(spec, dest.parents[1], sources, dataset=dataset, policy=policy)

    return get


def leftovers(path):
    """What the cache folder holds; a failed first download removes the folder itself."""
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_download_verifies_and_stores_the_decompressed_file(tmp_path, folder, serve, cache, fetch):
    root, content, digest = folder
    mirror = serve(root)
    dest = cache(tmp_path)
    fetch(f"{NAME}.gz", digest, dest, [mirror.url], policy=FAST)
    assert dest.read_bytes() == content
    assert leftovers(dest) == [NAME]


def test_404_on_the_first_mirror_then_the_next(tmp_path, folder, serve, cache, fetch):
    root, content, digest = folder
    empty = tmp_path / "empty"
    empty.mkdir()
    first, second = serve(empty), serve(root)
    dest = cache(tmp_path)
    fetch(f"{NAME}.gz", digest, dest, [first.url, second.url], policy=FAST)
    assert first.requests == [f"/{NAME}.gz"]  # a 404 is not retried
    assert dest.read_bytes() == content


@pytest.mark.parametrize("faults, requests", [([500, 503], 3), (["truncate"], 2), (["reset"], 2)],
                         ids=["5xx twice", "truncated body", "connection reset"])
def test_a_transient_failure_is_retried_and_never_left_under_the_name(tmp_path, folder, serve,
                                                                      faults, requests, cache,
                                                                      fetch):
    root, content, digest = folder
    mirror = serve(root)
    mirror.faults[f"/{NAME}.gz"] = list(faults)
    dest = cache(tmp_path)
    fetch(f"{NAME}.gz", digest, dest, [mirror.url], policy=FAST)
    assert len(mirror.requests) == requests
    assert dest.read_bytes() == content
    assert leftovers(dest) == [NAME]


def test_always_truncated_fails_clearly_with_nothing_cached(tmp_path, folder, serve, cache, fetch):
    root, _, digest = folder
    mirror = serve(root)
    mirror.faults[f"/{NAME}.gz"] = ["truncate"] * 3
    dest = cache(tmp_path)
    with pytest.raises(DownloadError, match="after 3 attempts"):
        fetch(f"{NAME}.gz", digest, dest, [mirror.url], policy=FAST)
    assert leftovers(dest) == []


def test_wrong_content_fails_verification_and_leaves_nothing(tmp_path, folder, serve, cache, fetch):
    root, _, _ = folder
    mirror = serve(root)
    dest = cache(tmp_path)
    with pytest.raises(DownloadError, match="does not match the expected SHA-256"):
        fetch(f"{NAME}.gz", "0" * 64, dest, [mirror.url], policy=FAST)
    assert leftovers(dest) == []


def test_an_html_error_page_with_status_200_is_recognised(tmp_path, serve, cache, fetch):
    root = tmp_path / "html"
    root.mkdir()
    (root / f"{NAME}.gz").write_text("<html><body>Access denied</body></html>")
    mirror = serve(root)
    dest = cache(tmp_path)
    with pytest.raises(DownloadError, match="served an HTML page"):
        fetch(f"{NAME}.gz", "0" * 64, dest, [mirror.url], policy=FAST)
    assert leftovers(dest) == []


def test_nothing_listening_lists_what_was_tried_and_how_to_fix_it(tmp_path, folder, cache, fetch,
                                                                  dataset):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(DownloadError) as error:
        fetch(f"{NAME}.gz", folder[2], cache(tmp_path), [url], policy=FAST)
    message = str(error.value)
    assert f"{url}{NAME}.gz: connection failed" in message
    assert dataset.mirror_env in message and "--data-dir" in message
    assert f"the four {dataset.title} files" in message
    assert not (tmp_path / "data").exists()  # no empty folders left behind
    assert "\n" not in message


def test_a_local_directory_is_a_mirror(tmp_path, folder, cache, fetch):
    root, content, digest = folder
    dest = cache(tmp_path)
    fetch(f"{NAME}.gz", digest, dest, [str(root)], policy=FAST)
    assert dest.read_bytes() == content


def test_a_corrupted_cached_file_is_fetched_again(tmp_path, folder, serve, dataset):
    root, content, digest = folder
    mirror = serve(root)
    spec = MnistFile(NAME, digest, (200,))
    data_dir = tmp_path / "data"
    assert ensure_file(spec, data_dir, [mirror.url], dataset=dataset) == content
    assert len(mirror.requests) == 1
    assert ensure_file(spec, data_dir, [mirror.url], dataset=dataset) == content
    assert len(mirror.requests) == 1  # cached: no second download
    cached = data_dir / dataset.name / NAME
    cached.write_bytes(content[:-1] + b"\xff")
    assert ensure_file(spec, data_dir, [mirror.url], dataset=dataset) == content
    assert len(mirror.requests) == 2
    assert cached.read_bytes() == content


def test_an_unwritable_data_directory_is_a_clear_error(tmp_path, folder, fetch):
    target = tmp_path / "file-not-dir"
    target.write_text("")
    with pytest.raises(DownloadError, match="cannot write there"):
        fetch(f"{NAME}.gz", folder[2], target / "mnist" / NAME, [str(folder[0])])


def test_a_server_that_stalls_mid_body_times_out_and_is_retried(tmp_path, folder, serve, cache,
                                                                fetch):
    root, content, digest = folder
    big = np.random.default_rng(0).integers(0, 255, 300_000).astype(np.uint8)
    content = encode_idx(big)
    (root / f"{NAME}.gz").write_bytes(gzip.compress(content, compresslevel=0))
    mirror = serve(root)
    mirror.faults[f"/{NAME}.gz"] = ["stall"]
    dest = cache(tmp_path)
    policy = RetryPolicy(attempts=2, backoff=0.01, connect_timeout=2, read_timeout=0.5)
    fetch(f"{NAME}.gz", hashlib.sha256(content).hexdigest(), dest, [mirror.url], policy,
          shape=big.shape)
    assert len(mirror.requests) == 2
    assert dest.read_bytes() == content
