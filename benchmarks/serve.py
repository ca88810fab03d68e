"""`nnctl serve`'s two user-facing times on this machine: startup to a served page, and the
round trip of a drawn digit.

    python benchmarks/serve.py WEIGHTS [--repeats N] [--json PATH]

- startup: from starting `nnctl serve WEIGHTS --port 0` as a process until GET / first
  answers 200 (the address is read from the line the process prints; the page is then
  polled every 5 ms); the median of N runs, and the median CPU time (user + system) of the
  whole process, which is about what the startup takes on an idle machine (the server
  idles once the page is served, and is stopped at once); each startup is interleaved with a
  run of `nnctl --help`, the floor any command pays (Python, the CLI, their imports), so the
  ratio holds whatever the machine's load;
- HTTP round trip: POST /api/predict?pixels=1 of a 280x280 PNG drawn as the page's pad draws
  (black strokes 20 pixels wide on white), on one kept-alive connection; median and 95th
  percentile of 200 requests after 20 of warm-up;
- in-process: the CPU time (time.process_time) of one prediction of that PNG through the
  server's Predictor, without HTTP, the median of 5 rounds of 50 after a warm-up: what a
  round trip costs the server, whatever the load;
- browser round trip (when Playwright and Chromium are installed): the page's own measure,
  from the pad's PNG export to the answer drawn, read after each of N digits drawn with the
  mouse in headless Chromium.
Every figure is printed with the load average, the BLAS library, kernel and thread count
(threadpoolctl, when installed) and the OPENBLAS_* variables.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]


def machine() -> dict:
    info: dict = {"load_average": [round(v, 2) for v in os.getloadavg()],
                  "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}}
    try:
        import numpy  # noqa: F401 - loads the BLAS threadpoolctl reports on
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    else:
        info["blas"] = [{k: pool.get(k) for k in ("internal_api", "version",
                                                 "architecture", "num_threads")}
                        for pool in threadpool_info()]
    return info


@contextmanager
def server(weights: Path):
    """A `nnctl serve` process on a free port; yields (its URL, when it was started)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "serve", str(weights), "--port",
                                "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    try:
        line = process.stdout.readline()
        if " at " not in line:
            raise SystemExit(f"nnctl serve did not start: {line!r}")
        yield line.split(" at ")[1].split()[0], started
    finally:
        process.terminate()
        process.wait(timeout=10)


def startup_s(weights: Path) -> tuple[float, float]:
    """(Wall seconds to the first page, CPU seconds of the whole process.)"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with server(weights) as (url, started):
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    if page.status == 200:
                        wall = time.perf_counter() - started
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def help_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nnctl", "--help"], stdout=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - started


def pad_png(seed: int) -> bytes:
    """A digit-like scribble as the page's pad exports it: 280x280, black on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (280, 280), "white")
    pen = ImageDraw.Draw(image)
    turn = 0.3 * seed
    points = [(140 + 60 * math.cos(t + turn), 140 + 90 * math.sin(t)) for t in
              (2 * math.pi * i / 40 for i in range(41))]
    pen.line(points, fill="black", width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def http_round_trips_ms(url: str, count: int) -> list[float]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    bodies = [pad_png(seed) for seed in range(10)]
    times = []
    for index in range(count + 20):
        started = time.perf_counter()
        connection.request("POST", "/api/predict?pixels=1", bodies[index % 10],
                           {"Content-Type": "image/png"})
        response = connection.getresponse()
        json.loads(response.read())
        if response.status != 200:
            raise SystemExit(f"POST /api/predict answered {response.status}")
        if index >= 20:
            times.append(1000 * (time.perf_counter() - started))
    connection.close()
    return times


def predictor_cpu_ms(weights: Path) -> float:
    from nnctl import weights as weights_file
    from nnctl.serve.predictor import Predictor

    predictor = Predictor(weights_file.load(weights))
    data = pad_png(0)
    for _ in range(5):
        predictor.image(data, "pad.png")
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(50):
            predictor.image(data, "pad.png")
        rounds.append(1000 * (time.process_time() - started) / 50)
    return statistics.median(rounds)


def browser_round_trips_ms(url: str, digits: int) -> list[float] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#layers tbody tr")
        box = page.locator("#pad").bounding_box()
        for index in range(digits + 2):
            if index:
                page.click("#clear")
            points = [(140 + 60 * math.cos(t), 140 + 90 * math.sin(t)) for t in
                      (2 * math.pi * i / 30 for i in range(31))]
            page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
            page.mouse.down()
            for x, y in points[1:]:
                page.mouse.move(box["x"] + x, box["y"] + y)
            page.mouse.up()
            page.wait_for_function("() => document.getElementById('pad').dataset.answered"
                                   " === document.getElementById('pad').dataset.version")
            if index >= 2:  # two of warm-up
                times.append(float(page.get_attribute("#timing", "data-ms")))
        browser.close()
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median": round(statistics.median(ordered), 2),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "count": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--repeats", type=int, default=7, help="startups and browser digits")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    results: dict = {"before": machine()}
    startups, helps = [], []
    for _ in range(args.repeats):
        helps.append(help_s())
        startups.append(startup_s(args.weights))
    results["startup_s"] = {"median": round(statistics.median(w for w, _ in startups), 3),
                            "all": [round(w, 3) for w, _ in startups],
                            "cpu_median": round(statistics.median(c for _, c in startups), 3),
                            "help_median": round(statistics.median(helps), 3)}
    with server(args.weights) as (url, _):
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.01)
        results["http_round_trip_ms"] = summary(http_round_trips_ms(url, 200))
        results["prediction_cpu_ms"] = round(predictor_cpu_ms(args.weights), 2)
        browser = browser_round_trips_ms(url, max(args.repeats, 10))
        results["browser_round_trip_ms"] = summary(browser) if browser else None
    results["after"] = machine()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
