"""`nnctl serve` in a real browser: headless Chromium, driven by Playwright, draws digits with
the mouse on a page served by a real `nnctl serve` process and a network trained on MNIST.

Chromium is Debian's (`apt-get install chromium`): Playwright's own browser download cannot
be fetched everywhere. Set NNCTL_SCREENSHOT=PATH to keep the page's screenshot (the docs'
docs/serve.png is made this way).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra is not installed")
playwright = pytest.importorskip("playwright.sync_api",
                                 reason="Playwright is not installed: pip install 'nnctl[browser]'")

pytestmark = pytest.mark.slow
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"]
TINY = """\
model:
  layers:
    - {units: 64, activation: relu}
    - {units: 10, activation: softmax}
training:
  epochs: 2
  batch_size: 64
  learning_rate: 0.05
  optimizer: {name: sgd, momentum: 0.9, nesterov: true}
"""


def chromium() -> str | None:
    found = os.environ.get("NNCTL_CHROMIUM")
    for name in ("chromium", "chromium-browser"):
        found = found or shutil.which(name)
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_cache) -> Path:
    """A small network trained on the real MNIST by `nnctl train` in a few seconds (about 96%),
    with one BLAS thread: two collapse when other processes share the cores."""
    root = tmp_path_factory.mktemp("serve")
    (root / "tiny.yaml").write_text(TINY)
    run = subprocess.run(
        [sys.executable, "-m", "nnctl", "train", "tiny.yaml", "--out", "w.npz", "--data-dir",
         str(mnist_cache), "--quiet"], cwd=root, capture_output=True, text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    return root / "w.npz"


@pytest.fixture(scope="module")
def server(trained):
    """`nnctl serve` as a user starts it, on a port the system picks; yields the page's URL."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "serve", str(trained), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=trained.parent)
    try:
        line = process.stdout.readline()
        assert line.startswith("nnctl serve: "), line + process.stderr.read()
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
        print(f"startup to a served page: {time.perf_counter() - started:.2f} s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
    errors = process.stderr.read()
    assert "Traceback" not in errors and "error" not in errors.lower(), errors


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except playwright.Error as error:
            pytest.skip(f"{path} does not start: {str(error).splitlines()[0]}")
        yield browser
        browser.close()


class Tabs:
    """New tabs on the page in one browser context, with their console errors collected."""

    def __init__(self, context, url: str):
        self.context, self.url = context, url
        self.errors: list[str] = []
        self.expected: list[str] = []  # errors a test causes on purpose (a refused upload)

    def open(self):
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.goto(self.url)
        page.wait_for_selector("#layers tbody tr")  # the model panel is filled
        return page

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(x in e for x in self.expected)]


@pytest.fixture
def tabs(browser, server):
    """Tabs on the page; the test fails if any console error was not expected."""
    context = browser.new_context(viewport={"width": 1180, "height": 560})
    tabs = Tabs(context, server)
    yield tabs
    context.close()
    assert tabs.unexpected_errors() == []


ONE = [(150, 45 + 9 * i) for i in range(21)]  # a slightly slanted stroke down
ONE = [(150 - 0.12 * (y - 45), y) for _, y in ONE]
ZERO = [(140 + 62 * math.cos(t), 140 + 92 * math.sin(t))
        for t in (-math.pi / 2 + 2 * math.pi * i / 40 for i in range(43))]


def stroke(page, points) -> None:
    """Draw with the mouse, in the pad's own pixels (the pad is shown at 280x280)."""
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
    page.mouse.up()


def settled(page) -> None:
    """Wait until the page shows the answer to its latest drawing or photo."""
    page.wait_for_function("() => document.getElementById('pad').dataset.answered"
                           " === document.getElementById('pad').dataset.version")


def bars(page) -> list[tuple[str, float, float]]:
    """(label, probability, drawn width in pixels) of each bar, top first."""
    return page.eval_on_selector_all(".bar-row", """rows => rows.map(r => [
        r.dataset.label, Number(r.dataset.probability),
        r.querySelector('.fill').getBoundingClientRect().width])""")


def test_a_drawn_one_and_zero_are_read_with_a_live_bar_chart(tabs, tmp_path):
    page = tabs.open()
    stroke(page, ONE)
    settled(page)
    assert page.inner_text("#label") == "1"
    shown = bars(page)
    assert len(shown) == 5 and shown[0][0] == "1"
    assert [p for _, p, _ in shown] == sorted((p for _, p, _ in shown), reverse=True)
    assert shown[0][2] > 2 * shown[1][2] and shown[0][1] > 0.5
    ink = page.eval_on_selector("#seen", """c => c.getContext('2d')
        .getImageData(0, 0, 28, 28).data.reduce((a, v, i) => a + (i % 4 === 0 ? v : 0), 0)""")
    assert ink > 255 * 10  # the 28x28 input the network saw has a stroke in it
    assert "ms" in page.inner_text("#timing")

    page.click("#clear")
    assert page.inner_text("#label") == "–" and bars(page) == []
    stroke(page, ZERO)
    settled(page)
    assert page.inner_text("#label") == "0" and bars(page)[0][0] == "0"
    shot = Path(os.environ.get("NNCTL_SCREENSHOT") or tmp_path / "serve.png")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size < 200_000

    page.click("#undo")
    assert page.inner_text("#label") == "–" and page.is_disabled("#undo")
    stroke(page, ONE)
    stroke(page, [(200, 60), (200, 61)])  # a stray dot
    page.keyboard.press("Control+z")  # undoes the dot: the 1 is read again
    settled(page)
    assert page.inner_text("#label") == "1"
    page.keyboard.press("Escape")
    assert page.inner_text("#label") == "–" and page.is_disabled("#clear")


def test_two_tabs_drawing_at_once_each_get_their_own_answer(tabs):
    first, second = tabs.open(), tabs.open()
    boxes = [page.locator("#pad").bounding_box() for page in (first, second)]
    for page, box, points in ((first, boxes[0], ONE), (second, boxes[1], ZERO)):
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
    for i in range(1, len(ZERO)):  # the strokes go on in both tabs in turn
        for page, box, points in ((first, boxes[0], ONE), (second, boxes[1], ZERO)):
            if i < len(points):
                page.mouse.move(box["x"] + points[i][0], box["y"] + points[i][1])
    for page in (first, second):
        page.mouse.up()
        settled(page)
    assert (first.inner_text("#label"), second.inner_text("#label")) == ("1", "0")


def test_a_finger_draws_too(browser, server):
    """Touch input, as a phone sends it: the pad takes pointer events of every kind."""
    context = browser.new_context(viewport={"width": 420, "height": 800}, has_touch=True,
                                  is_mobile=True)
    try:
        page = Tabs(context, server).open()
        box = page.locator("#pad").bounding_box()
        touch = context.new_cdp_session(page)

        def send(kind: str, x: float, y: float) -> None:
            points = [] if kind == "touchEnd" else [{"x": box["x"] + x, "y": box["y"] + y}]
            touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        send("touchStart", *ONE[0])
        for x, y in ONE[1:]:
            send("touchMove", x, y)
        send("touchEnd", 0, 0)
        settled(page)
        assert page.inner_text("#label") == "1"
        assert page.evaluate("() => window.scrollY") == 0  # the finger drew, it did not scroll
    finally:
        context.close()


def test_an_uploaded_photo_is_read_as_the_api_and_nnctl_predict_read_it(
        tabs, server, trained, mnist_cache, tmp_path):
    from nnctl.data.mnist import load_mnist

    mnist = load_mnist(mnist_cache, sources=[])
    digit = mnist.test_images[0].reshape(28, 28)  # a 7
    paper = 235 - np.asarray(Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC),
                             dtype=np.float64) * 0.8  # dark ink on light paper
    photo = tmp_path / "seven.png"
    Image.fromarray(paper.clip(0, 255).astype(np.uint8)).save(photo)

    page = tabs.open()
    page.set_input_files("#file", str(photo))
    settled(page)
    assert page.inner_text("#label") == str(mnist.test_labels[0])

    request = urllib.request.Request(server + "api/predict", data=photo.read_bytes(),
                                     headers={"Content-Type": "image/png"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    cli = subprocess.run([sys.executable, "-m", "nnctl", "predict", photo.name, "--weights",
                          str(trained), "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert answer == [dict(json.loads(cli.stdout)[0], file="upload")]
    top = bars(page)[0]
    assert top[0] == str(answer[0]["label"])
    assert top[1] == pytest.approx(max(answer[0]["probabilities"]), abs=1e-6)

    page.click("#clear")
    dropped = page.evaluate_handle("""bytes => {
        const files = new DataTransfer();
        files.items.add(new File([new Uint8Array(bytes)], "seven.png", {type: "image/png"}));
        return files;
    }""", list(photo.read_bytes()))
    page.dispatch_event("#pad", "drop", {"dataTransfer": dropped})
    settled(page)
    assert page.inner_text("#label") == str(answer[0]["label"])
    assert bars(page)[0][1] == pytest.approx(max(answer[0]["probabilities"]), abs=1e-6)

    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    tabs.expected.append("status of 422")  # the browser logs every refused request
    page.set_input_files("#file", str(text))
    settled(page)
    assert "not an image" in page.inner_text("#status") and page.inner_text("#label") == "–"
