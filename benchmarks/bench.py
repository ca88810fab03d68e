"""nnctl's speed against the GEMM floor and PyTorch, on MNIST, on this machine.

    python benchmarks/bench.py [--quick] [--json PATH] [--data-dir DIR] [--contention on|off|only]

Every figure is the median of several repetitions after a warm-up; the epochs of one
network are timed in interleaved rounds (floor, nnctl, torch, floor, ...):
- floor: only the matrix products one training epoch needs (forward A W^T, backward
  delta^T A and delta W for each layer), on preallocated float32 arrays;
- nnctl: one training epoch through the library, data in memory, no evaluation;
- torch: the same network, batch and learning rate in PyTorch on the CPU with a plain
  index-shuffle loop, when torch is importable;
- evaluate: the pass over the test images `nnctl train` makes after every epoch, shown as
  a share of nnctl's epoch;
- whole processes: `nnctl --help`, `nnctl predict` of one image, `nnctl train` of one epoch
  with MNIST cached, and that training process's peak resident memory;
- contention: nnctl's epoch (its default thread policy) and PyTorch's (its default
  threads) with K = 0, 1, 2 competing CPU-bound processes that the benchmark starts and
  stops itself, interleaved, with the load average at the end of each K.
Every run prints and records the BLAS threadpoolctl sees, the OPENBLAS_* variables and
the load average, which decide how these figures can be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from nnctl.activations import get_activation
from nnctl.data.mnist import load_mnist, resolve_data_dir
from nnctl.data.scaler import MinMaxScaler
from nnctl.losses import get_loss
from nnctl.network import Network
from nnctl.optimizers import SGD
from nnctl.trainer import evaluate, fit

NETWORKS = [
    {"name": "784-128-10", "sizes": [784, 128, 10], "batch": 64, "momentum": 0.0},
    {"name": "784-512-512-10", "sizes": [784, 512, 512, 10], "batch": 128, "momentum": 0.9},
]
LEARNING_RATE = 0.05


def median_time(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_medians(runs: dict, repeats: int, settle: dict | None = None) -> dict:
    """The median time of each run, timed in rounds that take every run in turn: this
    machine's speed drifts by about 10% over a minute, and interleaving makes the drift hit
    all of them alike, so their ratios hold. `settle` gives pauses before a run: OpenBLAS's
    worker thread spins for about 0.1 s after NumPy's last product, which made PyTorch's
    next epoch 24% slower when it followed at once (0.524 s against 0.423 s run on its own,
    0.431 s after a 0.2 s pause; medians of 5 from a script alternating the two); NumPy
    after PyTorch showed no such effect."""
    settle = settle or {}
    times = {name: [] for name in runs}
    for round_ in range(repeats + 1):  # round 0 is the warm-up
        for name, run in runs.items():
            time.sleep(settle.get(name, 0.0))
            started = time.perf_counter()
            run()
            if round_:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def floor_epoch(sizes, batch, samples):
    """One epoch of just the matrix products, on preallocated float32 arrays."""
    rng = np.random.default_rng(0)
    pairs = list(zip(sizes, sizes[1:]))
    weights = [rng.standard_normal((o, i), dtype=np.float32) for i, o in pairs]
    grads = [np.empty_like(w) for w in weights]

    def buffers(rows):
        acts = [rng.standard_normal((rows, s), dtype=np.float32) for s in sizes]
        return acts, [np.empty((rows, s), np.float32) for s in sizes]

    full, rest = divmod(samples, batch)
    shapes = [(batch, full)] + ([(rest, 1)] if rest else [])
    prepared = [(buffers(rows), count) for rows, count in shapes]

    def epoch():
        for (acts, deltas), count in prepared:
            for _ in range(count):
                for layer, w in enumerate(weights):
                    np.matmul(acts[layer], w.T, out=deltas[layer + 1])
                for layer in range(len(weights) - 1, -1, -1):
                    np.matmul(deltas[layer + 1].T, acts[layer], out=grads[layer])
                    np.matmul(deltas[layer + 1], weights[layer], out=deltas[layer])

    return epoch


def relu_network(spec, rng):
    activations = [get_activation("relu")] * (len(spec["sizes"]) - 2) + [get_activation("softmax")]
    return Network.create(spec["sizes"], activations, rng)


def nnctl_epoch(spec, x, y, scaler, train=fit):
    """As `nnctl train` runs it: uint8 images, each gathered batch scaled on the way."""
    rng = np.random.default_rng(0)
    network = relu_network(spec, rng)
    optimizer = SGD(LEARNING_RATE, momentum=spec["momentum"])
    loss = get_loss("sparse_categorical_crossentropy")
    transform = scaler.transformer(network.dtype)
    return lambda: train(network, loss, optimizer, x, y, epochs=1, batch_size=spec["batch"],
                       rng=rng, transform=transform)


def evaluate_run(spec, x_test, y_test):
    """The evaluation `nnctl train` makes after every epoch (the cost does not depend on
    the weights' values, so a fresh network of the same shape stands in)."""
    network = relu_network(spec, np.random.default_rng(0))
    loss = get_loss("sparse_categorical_crossentropy")
    return lambda: evaluate(network, loss, x_test, y_test)


def torch_epoch(spec, x, y):
    """The same network in PyTorch, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    layers = []
    for i, (a, b) in enumerate(zip(spec["sizes"], spec["sizes"][1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(spec["sizes"]) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=spec["momentum"])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    batch = spec["batch"]

    def epoch():
        order = torch.randperm(len(tx))
        for start in range(0, len(tx), batch):
            index = order[start:start + batch]
            loss = torch.nn.functional.cross_entropy(model(tx[index]), ty[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return epoch


def process_time(command, repeats, env=None) -> float:
    return median_time(lambda: subprocess.run(command, check=True, env=env,
                                              stdout=subprocess.DEVNULL), repeats)


def peak_rss_mb(command, env) -> float:
    """The command's peak RSS, measured from a small fresh interpreter: a child forked from
    this benchmark process would count this process's own memory as its peak."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    output = subprocess.run([sys.executable, "-c", probe, *command], check=True, env=env,
                            capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024


def whole_process(data_dir: Path, test_image: np.ndarray, repeats: int) -> dict:
    from PIL import Image

    nnctl = [sys.executable, "-m", "nnctl"]
    env = {**os.environ, "NNCTL_DATA_DIR": str(data_dir)}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config = scratch / "bench.yaml"
        config.write_text("model:\n  layers:\n    - {units: 128, activation: relu}\n"
                          "    - {units: 10, activation: softmax}\ntraining:\n  epochs: 1\n"
                          "  batch_size: 64\n")
        weights, image = scratch / "w.npz", scratch / "digit.png"
        Image.fromarray(test_image.reshape(28, 28)).save(image)
        train = nnctl + ["train", str(config), "--out", str(weights), "--quiet"]
        figures = {
            "help_s": process_time(nnctl + ["--help"], repeats, env),
            "train_epoch_process_s": process_time(train, repeats, env),
            "peak_rss_mb": peak_rss_mb(train, env),
        }
        figures["predict_s"] = process_time(
            nnctl + ["predict", str(image), "--weights", str(weights)], repeats, env)
    return figures


# A CPU-bound loop that stops by itself when the benchmark that started it is gone.
SPIN = ("import os\nparent = os.getppid()\nprint(flush=True)\n"
        "while os.getppid() == parent:\n    sum(range(100000))\n")


@contextlib.contextmanager
def competitors(count: int) -> Iterator[list[subprocess.Popen]]:
    """`count` CPU-bound processes running for the duration of the block, each in a
    session of its own (as other programs on the machine would be)."""
    started = []
    try:
        for _ in range(count):
            process = subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE,
                                       start_new_session=True)
            started.append(process)
            process.stdout.readline()  # it is running
        yield started
    finally:
        for process in started:
            process.kill()
            process.wait()
            process.stdout.close()


def openblas_route_epoch(spec, x, y, scaler):
    """nnctl's epoch by the route before its thread policy: products uncut, on OpenBLAS's
    own threads (as many as it starts with)."""
    from nnctl import blas

    run = nnctl_epoch(spec, x, y, scaler, train=fit.__wrapped__)  # fit without the policy

    def epoch():
        blocks, blas.BLOCKS_MAX = blas.BLOCKS_MAX, 1
        try:
            run()
        finally:
            blas.BLOCKS_MAX = blocks

    return epoch


def contention(x, raw, y, scaler, counts=(0, 1, 2), repeats: int = 5,
               networks=tuple(NETWORKS), openblas_route: bool = False) -> list[dict]:
    """One epoch of each network for nnctl (default threads) and PyTorch (default threads)
    with each number of competing processes, the two timed in interleaved rounds; with
    `openblas_route`, also nnctl by the route before its thread policy."""
    rows = []
    for count in counts:
        with competitors(count):
            for spec in networks:
                runs = {"nnctl_s": nnctl_epoch(spec, raw, y, scaler)}
                if openblas_route:
                    runs["nnctl_openblas_s"] = openblas_route_epoch(spec, raw, y, scaler)
                torch_run = torch_epoch(spec, x, y)
                if torch_run is not None:
                    runs["torch_s"] = torch_run
                medians = interleaved_medians(runs, repeats, {"torch_s": 0.2})
                rows.append({"network": spec["name"], "competitors": count, "torch_s": None,
                             **medians, "load_1min": round(os.getloadavg()[0], 2)})
    return rows


def environment() -> dict:
    """What decides these figures: the BLAS and its threads, OPENBLAS_* variables, load."""
    from threadpoolctl import threadpool_info

    from nnctl.threads import resolve

    return {"blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture",
                                              "num_threads", "threading_layer")}
                     for lib in threadpool_info()],
            "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
            "nnctl_threads": resolve(), "cpus": os.cpu_count(),
            "load_1_5_15": [round(v, 2) for v in os.getloadavg()]}


def print_contention(rows: list[dict]) -> None:
    idle = {row["network"]: row["nnctl_s"] for row in rows if row["competitors"] == 0}
    print(f"{'network':<16}{'competitors':>12}{'nnctl s':>10}{'torch s':>10}"
          f"{'nnctl/idle':>12}{'torch/nnctl':>13}{'load':>7}{'openblas route s':>18}")
    for row in rows:
        torch_s, base = row["torch_s"], idle.get(row["network"])
        print(f"{row['network']:<16}{row['competitors']:>12}{row['nnctl_s']:>10.3f}"
              f"{torch_s if torch_s is not None else float('nan'):>10.3f}"
              f"{row['nnctl_s'] / base if base else float('nan'):>12.2f}"
              f"{torch_s / row['nnctl_s'] if torch_s else float('nan'):>13.2f}"
              f"{row['load_1min']:>7.2f}{row.get('nnctl_openblas_s', float('nan')):>18.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, 10000 samples")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--contention", choices=("on", "off", "only"), default="on",
                        help="the runs with 0, 1, 2 competing processes: also, skip, or alone")
    parser.add_argument("--openblas-route", action="store_true",
                        help="in the contention runs, also nnctl by the route before its "
                             "thread policy (uncut products on OpenBLAS's own threads)")
    args = parser.parse_args()
    repeats = 2 if args.quick else 7
    data_dir = resolve_data_dir(args.data_dir)
    mnist = load_mnist(data_dir)
    samples = 10000 if args.quick else len(mnist.train_images)
    raw, y = mnist.train_images[:samples], mnist.train_labels[:samples]
    scaler = MinMaxScaler.fit(mnist.train_images)
    x = scaler.transform(raw)
    test_samples = 2000 if args.quick else len(mnist.test_images)
    x_test = scaler.transform(mnist.test_images[:test_samples])
    y_test = mnist.test_labels[:test_samples]

    results = {"environment": environment(), "networks": []}
    print(json.dumps(results["environment"]))
    if args.contention != "off":
        results["contention"] = contention(x, raw, y, scaler, repeats=2 if args.quick else 5,
                                           openblas_route=args.openblas_route)
        print_contention(results["contention"])
        results["environment_after_contention"] = environment()
    if args.contention == "only":
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    for spec in NETWORKS:
        runs = {"floor_s": floor_epoch(spec["sizes"], spec["batch"], samples),
                "nnctl_s": nnctl_epoch(spec, raw, y, scaler),
                "evaluate_s": evaluate_run(spec, x_test, y_test)}
        torch_run = torch_epoch(spec, x, y)
        if torch_run is not None:
            runs["torch_s"] = torch_run
        results["networks"].append({"name": spec["name"], "batch": spec["batch"],
                                    "samples": samples, "torch_s": None,
                                    **interleaved_medians(runs, repeats, {"torch_s": 0.2})})
    results.update(whole_process(data_dir, mnist.test_images[0], 3 if args.quick else 5))

    print(f"{'network':<16}{'batch':>6}{'floor s':>10}{'nnctl s':>10}{'torch s':>10}"
          f"{'nnctl/floor':>13}{'nnctl/torch':>13}{'test eval':>11}")
    for row in results["networks"]:
        torch_s = row["torch_s"]
        print(f"{row['name']:<16}{row['batch']:>6}{row['floor_s']:>10.3f}{row['nnctl_s']:>10.3f}"
              f"{torch_s if torch_s is not None else float('nan'):>10.3f}"
              f"{row['nnctl_s'] / row['floor_s']:>13.2f}"
              f"{row['nnctl_s'] / torch_s if torch_s else float('nan'):>13.2f}"
              f"{100 * row['evaluate_s'] / row['nnctl_s']:>10.1f}%")
    if any(row["torch_s"] is None for row in results["networks"]):
        print("torch is not installed: pip install torch==2.13.0 (or the bench extra) to compare")
    print(f"nnctl --help {results['help_s']:.3f} s; predict one image {results['predict_s']:.3f} s; "
          f"train one epoch (process) {results['train_epoch_process_s']:.2f} s; "
          f"peak RSS {results['peak_rss_mb']:.0f} MB")
    print(json.dumps({"load_1_5_15": [round(v, 2) for v in os.getloadavg()]}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
