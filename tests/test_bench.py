"""A smoke test of the benchmark script on a tiny slice: it runs, and its figures are sane."""

import importlib.util
from pathlib import Path

import numpy as np

from nnctl.data.scaler import MinMaxScaler

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_measures_a_tiny_slice():
    bench = load_bench()
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (300, 784)).astype(np.uint8)
    labels = rng.integers(0, 10, 300)
    scaler = MinMaxScaler.fit(raw)
    spec = {**bench.NETWORKS[0], "batch": 32}
    runs = {"floor": bench.floor_epoch(spec["sizes"], spec["batch"], len(raw)),
            "nnctl": bench.nnctl_epoch(spec, raw, labels, scaler)}
    medians = bench.interleaved_medians(runs, repeats=1)
    assert set(medians) == {"floor", "nnctl"}
    assert all(0 < seconds < 5 for seconds in medians.values())
    evaluation = bench.evaluate_run(spec, scaler.transform(raw), labels)()
    assert evaluation.samples == 300


def test_the_conv_benchmark_measures_a_tiny_slice():
    bench = load_bench()
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (100, 784)).astype(np.uint8)
    labels = rng.integers(0, 10, 100)
    scaler = MinMaxScaler.fit(raw)
    spec = {**bench.CONV_NETWORKS[0], "batch": 32}
    runs = {"floor": bench.conv_floor_epoch(spec, len(raw)),
            "nnctl": bench.nnctl_epoch(spec, raw, labels, scaler, bench.conv_network)}
    medians = bench.interleaved_medians(runs, repeats=1)
    assert set(medians) == {"floor", "nnctl"} and all(s > 0 for s in medians.values())
    evaluation = bench.evaluate_run(spec, scaler.transform(raw), labels, bench.conv_network)()
    assert evaluation.samples == 100
