"""A smoke test of the benchmark script on a tiny slice: it runs, and its figures are sane."""

import importlib.util
import time
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


def test_the_contention_runs_start_and_stop_their_competitors(monkeypatch):
    bench = load_bench()
    monkeypatch.setattr(bench, "torch_epoch", lambda spec, x, y: lambda: time.sleep(0.01))
    with bench.competitors(2) as running:
        assert len(running) == 2 and all(p.poll() is None for p in running)
    assert all(p.poll() is not None for p in running)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (256, 784)).astype(np.uint8)
    labels = rng.integers(0, 10, 256)
    scaler = MinMaxScaler.fit(raw)
    spec = {**bench.NETWORKS[0], "batch": 32}
    rows = bench.contention(scaler.transform(raw), raw, labels, scaler, counts=(0, 1),
                            repeats=1, networks=[spec], openblas_route=True)
    assert [(r["network"], r["competitors"]) for r in rows] == [(spec["name"], 0),
                                                                 (spec["name"], 1)]
    assert all(0 < r["nnctl_s"] < 30 and r["load_1min"] >= 0 for r in rows)
    assert all(r["torch_s"] >= 0.01 and r["nnctl_openblas_s"] > 0 for r in rows)
    assert bench.environment()["nnctl_threads"] >= 1
