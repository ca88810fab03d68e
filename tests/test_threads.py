"""The thread policy: blocks of a product, helpers that take them, the same bits whatever
the thread count, and where the count comes from."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from nnctl import blas, parallel, threads
from nnctl.activations import get_activation
from nnctl.cli.app import app
from nnctl.config import validate
from nnctl.errors import ConfigError, UsageError
from nnctl.losses import get_loss
from nnctl.network import Network
from nnctl.optimizers import SGD, Adam
from nnctl.trainer import fit
from nnctl.weights import load

runner = CliRunner()


@pytest.fixture
def forced(monkeypatch):
    """Helpers take part in every product, however slow that is on a busy machine: the
    shared route is what these tests are about (and no cap another test left applies).
    Blocks are made small, so that the small networks here have products cut in several."""
    monkeypatch.setattr(threads, "_cap", None)
    monkeypatch.setattr(blas, "BLOCK_WORK", 1 << 20)
    parallel.set_adaptive(False)
    yield
    parallel.set_adaptive(True)
    parallel.set_workers(1)


@pytest.fixture
def helper_blocks(monkeypatch):
    """Counts the GEMM calls made on helper threads (so a test can tell they took part)."""
    if not blas.kernels():
        pytest.skip("no scipy-openblas kernels found in this NumPy")
    real, counts = blas.kernels()[np.dtype(np.float32)], {"helper": 0, "caller": 0}

    def gemm(*args):
        name = threading.current_thread().name
        counts["helper" if name.startswith("nnctl-helper") else "caller"] += 1
        real.gemm(*args)

    monkeypatch.setitem(blas.kernels(), np.dtype(np.float32), blas._Kernels(gemm, real.axpy))
    return counts


@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(1, 3000))
def test_a_partition_covers_the_longer_side_in_aligned_blocks(m, n, k):
    by_rows, cuts = blas.partition(m, n, k)
    length = m if by_rows else n
    assert length == max(m, n)
    assert cuts[0] == 0 and cuts[-1] == length
    assert all(a < b for a, b in zip(cuts, cuts[1:]))
    assert 1 <= len(cuts) - 1 <= blas.BLOCKS_MAX
    assert all(cut % blas.ALIGN == 0 for cut in cuts[:-1])
    if len(cuts) > 2:
        assert m * n * k >= (len(cuts) - 1) * blas.BLOCK_WORK


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 200), st.booleans(),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_blocked_products_are_the_same_bits_on_1_2_and_3_threads(m, n, k, trans_a, trans_b,
                                                                 seed):
    """Every transposition and both cutting directions; small blocks so that shapes this
    size are cut, and results compared bit for bit across thread counts, and with NumPy."""
    kernels = blas.kernels().get(np.dtype(np.float32))
    if kernels is None:
        pytest.skip("no scipy-openblas kernels found in this NumPy")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    c = rng.standard_normal((m, n), dtype=np.float32)
    expected = -0.5 * ((a.T if trans_a else a) @ (b.T if trans_b else b)) + 2.0 * c
    results = []
    old = blas.BLOCK_WORK
    blas.BLOCK_WORK = 256
    parallel.set_adaptive(False)
    try:
        for count in (1, 2, 3):
            parallel.set_workers(count)
            out = c.copy()
            blas._gemm(kernels, out, a, b, trans_a, trans_b, -0.5, 2.0)
            results.append(out)
    finally:
        blas.BLOCK_WORK = old
        parallel.set_adaptive(True)
        parallel.set_workers(1)
    np.testing.assert_allclose(results[0], expected, rtol=1e-4, atol=1e-3)
    assert all(np.array_equal(results[0], other) for other in results[1:])


def test_every_block_runs_once_and_a_helper_error_reaches_the_caller(forced):
    parallel.set_workers(3)
    done = []
    for _ in range(50):
        done.clear()
        parallel.run(done.append, 40)
        assert sorted(done) == list(range(40))

    def fail(index):
        if threading.current_thread().name.startswith("nnctl-helper") or index == 39:
            raise RuntimeError(f"block {index}")

    with pytest.raises(RuntimeError, match="block"):
        parallel.run(fail, 40)
    done.clear()
    parallel.run(done.append, 3)  # the helpers are still there after an error
    assert len(done) == 3


def test_the_chooser_leaves_the_helpers_when_they_are_slower_and_comes_back():
    chooser = parallel._Chooser()
    seconds = {True: 3.0, False: 1.0}  # a busy machine: shared calls take longer
    modes = []
    for _ in range(40 * parallel.WINDOW):
        modes.append(chooser.shared_now())
        chooser.record(seconds[modes[-1]])
    assert not chooser.shared and modes[-parallel.WINDOW:] == [False] * parallel.WINDOW
    assert sum(modes[-20 * parallel.WINDOW:]) <= 2 * parallel.WINDOW  # tries, now and then
    seconds = {True: 0.5, False: 1.0}  # the machine quietens
    for _ in range(200 * parallel.WINDOW):
        chooser.record(seconds[chooser.shared_now()])
    assert chooser.shared


def synthetic(n=640, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784), np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("optimizer", [
    lambda: SGD(0.1), lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda: Adam(1e-3)], ids=["sgd", "nesterov-decay", "adam"])
def test_fit_gives_the_same_weights_with_1_2_and_3_threads(optimizer, forced, helper_blocks):
    x, y = synthetic()
    finals = []
    for count in (1, 2, 3):
        rng = np.random.default_rng(0)
        relu, softmax = get_activation("relu"), get_activation("softmax")
        network = Network.create([784, 256, 64, 10], [relu, relu, softmax], rng,
                                 dropout=[0.2, 0.0, 0.0])
        fit(network, get_loss("sparse_categorical_crossentropy"), optimizer(), x, y, epochs=2,
            batch_size=64, rng=rng, threads=count)
        finals.append([p.value.copy() for p in network.params])
    assert helper_blocks["helper"] > 0, "the helpers never computed a block"
    for other in finals[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(finals[0], other))
    assert parallel.workers() == 1  # put back after training


SLICE = """\
data: {validation: 56000}
model:
  layers:
    - {units: 256, activation: relu, dropout: 0.1}
    - {units: 10, activation: softmax}
training:
  epochs: 2
  batch_size: 64
  learning_rate: 0.05
  optimizer: {name: sgd, momentum: 0.9, nesterov: true}
  seed: 5
"""


@pytest.mark.slow
def test_train_writes_the_same_weights_with_1_and_2_threads(tmp_path, mnist_cache, forced,
                                                             helper_blocks):
    config = tmp_path / "c.yaml"
    config.write_text(SLICE)
    files = []
    for count in (1, 2):
        out = tmp_path / f"w{count}.npz"
        result = runner.invoke(app, ["train", str(config), "--out", str(out), "--data-dir",
                                     str(mnist_cache), "--threads", str(count)])
        assert result.exit_code == 0, result.output
        assert f"threads {count} (set)" in result.output
        files.append(load(out))
    assert helper_blocks["helper"] > 0, "the helpers never computed a block"
    one, two = (f.network.params for f in files)
    assert all(np.array_equal(a.value, b.value) for a, b in zip(one, two))
    assert files[0].history[-1]["evaluations"] == files[1].history[-1]["evaluations"]


def test_the_count_comes_from_the_option_then_the_environment_then_auto(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 12)
    assert threads.resolve() == threads.MAX_AUTO and threads.describe() == "threads 8 (auto)"
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.resolve() == 3 and threads.resolve(2) == 2 and threads.resolve("auto") == 8
    assert threads.describe() == f"threads 3 ({threads.ENV})"
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(UsageError, match=threads.ENV):
        threads.resolve()


def test_a_limit_caps_every_request(monkeypatch):
    monkeypatch.setattr(threads, "_cap", None)
    monkeypatch.delenv(threads.ENV, raising=False)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=None):
        threads.limit(1)
        assert threads.resolve(4) == 1 and threads.resolve() == 1
        assert threads.describe(4) == "threads 1 (set, capped at 1)"
    with pytest.raises(ValueError):
        threads.limit(0)


def test_using_holds_the_blas_to_one_thread_and_puts_everything_back():
    from threadpoolctl import threadpool_info

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    with threads.using(2):
        assert parallel.workers() == 2
        assert all(lib["num_threads"] == 1 for lib in threadpool_info()
                   if lib["user_api"] == "blas")
    assert parallel.workers() == 1
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, True, 10**6])
def test_a_bad_thread_count_in_a_config_names_the_key(value):
    raw = {"model": {"layers": [{"units": 10, "activation": "softmax"}]},
           "training": {"threads": value}}
    with pytest.raises(ConfigError, match="training.threads"):
        validate(raw)


def test_threads_in_a_config_and_on_the_command_line(tmp_path, monkeypatch):
    raw = {"model": {"layers": [{"units": 10, "activation": "softmax"}]}}
    assert validate(raw).training.threads is None
    assert validate({**raw, "training": {"threads": "auto"}}).training.threads == "auto"
    assert validate({**raw, "training": {"threads": 2}}).training.threads == 2
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  layers:\n    - {units: 10, activation: softmax}\n")
    result = runner.invoke(app, ["train", str(config), "--threads", "lots"])
    assert result.exit_code == 2 and "--threads" in result.output and "lots" in result.output
    assert "Traceback" not in result.output
    monkeypatch.setenv(threads.ENV, "0")
    result = runner.invoke(app, ["train", str(config), "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and threads.ENV in result.output
    assert "Traceback" not in result.output
