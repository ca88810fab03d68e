"""`nnctl serve` over HTTP with Starlette's test client: the page, the API, every error path."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageDraw
from typer.testing import CliRunner

pytest.importorskip("starlette", reason="the serve extra is not installed")
try:
    import httpx2  # noqa: F401 - the HTTP client Starlette's test client is built on
except ImportError:
    pytest.importorskip("httpx", reason="Starlette's test client needs httpx2 (or httpx)")

from starlette.testclient import TestClient  # noqa: E402

from nnctl import weights  # noqa: E402
from nnctl.cli.app import app as cli  # noqa: E402
from nnctl.config import config_from_dict  # noqa: E402
from nnctl.data.scaler import MinMaxScaler  # noqa: E402
from nnctl.experiment import build_network  # noqa: E402
from nnctl.serve.app import create_app  # noqa: E402
from nnctl.serve.predictor import Predictor  # noqa: E402

HISTORY = [
    {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.85, "seconds": 1.0, "learning_rate": 0.1,
     "evaluations": {"test": {"loss": 0.3, "accuracy": 0.91, "samples": 10000}}},
    {"epoch": 2, "train_loss": 0.25, "train_accuracy": 0.93, "seconds": 1.0, "learning_rate": 0.1,
     "evaluations": {"test": {"loss": 0.2, "accuracy": 0.94, "samples": 10000}}},
]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def drawing(seed: int = 0) -> bytes:
    """A stroke or two of dark ink on white paper, 280x280, as the page's pad sends."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (280, 280), 255)
    pen = ImageDraw.Draw(image)
    for _ in range(2):
        points = [tuple(int(v) for v in rng.integers(40, 240, 2)) for _ in range(3)]
        pen.line(points, fill=0, width=20, joint="curve")
    return png(image)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels in a few dozen bytes: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def checkpoint():
    config = config_from_dict({"model": {"layers": [{"units": 16, "activation": "relu"},
                                                    {"units": 10, "activation": "softmax"}]}})
    network = build_network(config, np.random.default_rng(0))
    scaler = MinMaxScaler(np.asarray(0.0), np.asarray(255.0))
    return weights.Checkpoint(network, scaler, config, HISTORY)


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(checkpoint, "w.npz", max_body=200_000),
                    raise_server_exceptions=False) as client:
        yield client


def predict_cli(tmp_path, monkeypatch, checkpoint, name: str, data: bytes, *options) -> list:
    """What `nnctl predict --json` prints for the same bytes saved as `name`."""
    monkeypatch.chdir(tmp_path)
    weights.save(tmp_path / "w.npz", checkpoint)
    (tmp_path / name).write_bytes(data)
    result = CliRunner().invoke(cli, ["predict", name, "--weights", "w.npz", "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_page_and_its_files_are_served_with_safety_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in page.text and "/static/app.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another site
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "fetch(\"/api/predict" in client.get("/static/app.js").text


def test_the_model_summary_has_layers_parameters_history_and_classes(client):
    model = client.get("/api/model").json()
    assert model["file"] == "w.npz" and model["input"] == 784
    assert [(l["inputs"], l["units"], l["activation"]) for l in model["layers"]] == [
        (784, 16, "relu"), (16, 10, "softmax")]
    assert model["parameters"] == 784 * 16 + 16 + 16 * 10 + 10
    assert model["classes"] == [str(d) for d in range(10)]
    assert model["history"] == HISTORY and model["epochs"] == 2
    assert model["test_accuracy"] == 0.94 and model["saved_epoch"] == 2


@pytest.mark.parametrize("stopping, save_best, train_state, slots, saved", [
    (0, False, {}, {}, 3),  # the last epoch
    (2, False, None, {}, 1),  # early stopping restored the best epoch and dropped the state
    (2, False, {}, {}, 3),  # early stopping on, but the run had not stopped yet
    (0, True, {}, {"last": []}, 1),  # save_best, the last epoch's weights kept aside
    (0, True, {}, {}, 3),  # save_best when the best epoch is the last
])
def test_the_test_accuracy_shown_is_that_of_the_epoch_the_file_holds(
        checkpoint, stopping, save_best, train_state, slots, saved):
    from dataclasses import replace

    from nnctl.config import EarlyStoppingConfig
    from nnctl.serve.model import summary

    history = [dict(HISTORY[0], epoch=epoch, evaluations={
        "validation": {"loss": 0.1, "accuracy": validation, "samples": 5000},
        "test": {"loss": 0.2, "accuracy": test, "samples": 10000}})
        for epoch, validation, test in ((1, 0.95, 0.91), (2, 0.93, 0.92), (3, 0.94, 0.93))]
    training = replace(checkpoint.config.training, save_best=save_best,
                       early_stopping=EarlyStoppingConfig(patience=stopping))
    file = replace(checkpoint, config=replace(checkpoint.config, training=training),
                   history=history, train_state=train_state, optimizer_state=slots)
    answer = summary(file, "w.npz")
    assert answer["saved_epoch"] == saved
    assert answer["test_accuracy"] == history[saved - 1]["evaluations"]["test"]["accuracy"]


def test_an_uploaded_image_gets_what_nnctl_predict_json_prints(client, checkpoint, tmp_path,
                                                                monkeypatch):
    data = drawing(1)
    expected = predict_cli(tmp_path, monkeypatch, checkpoint, "digit.png", data)
    as_form = client.post("/api/predict", files={"file": ("digit.png", data, "image/png")})
    assert as_form.status_code == 200 and as_form.json() == expected
    as_body = client.post("/api/predict", content=data, headers={"content-type": "image/png"})
    assert as_body.json() == [dict(expected[0], file="upload")]


def test_a_fashion_model_names_its_classes_and_prepares_photos_as_predict_does(
        checkpoint, tmp_path, monkeypatch):
    from dataclasses import replace

    from nnctl.data.datasets import FASHION_MNIST

    fashion = replace(checkpoint, dataset=FASHION_MNIST)
    photo = Image.new("L", (200, 260), 230)
    ImageDraw.Draw(photo).rectangle((50, 40, 150, 220), fill=40)  # a dark coat on light paper
    data = png(photo)
    expected = predict_cli(tmp_path, monkeypatch, fashion, "coat.png", data)
    with TestClient(create_app(fashion)) as client:
        model = client.get("/api/model").json()
        answer = client.post("/api/predict", files={"file": ("coat.png", data)}).json()
    assert model["classes"] == list(FASHION_MNIST.classes) and model["dataset"] == "Fashion-MNIST"
    assert answer == expected and answer[0]["class"] == FASHION_MNIST.classes[answer[0]["label"]]


def test_raw_takes_a_28x28_image_as_it_is_and_pixels_shows_the_input(
        client, checkpoint, tmp_path, monkeypatch):
    digit = np.zeros((28, 28), np.uint8)
    digit[2:14, 3:7] = 255  # small and off-centre: not as MNIST's preparation leaves it
    data = png(Image.fromarray(digit))
    expected = predict_cli(tmp_path, monkeypatch, checkpoint, "d.png", data, "--raw")
    answer = client.post("/api/predict?raw=1&pixels=1", files={"file": ("d.png", data)}).json()
    pixels = np.array(answer[0].pop("pixels"))
    assert answer == expected
    np.testing.assert_allclose(pixels.reshape(28, 28), digit / 255.0, atol=1e-4)
    prepared = client.post("/api/predict?pixels=1", files={"file": ("d.png", data)}).json()[0]
    assert not np.allclose(prepared["pixels"], pixels)  # MNIST-style: cropped, scaled, centred


def test_a_28x28_json_array_is_classified_as_predict_raw_would(client, checkpoint, tmp_path,
                                                               monkeypatch):
    digit = np.random.default_rng(3).integers(0, 256, (28, 28)).astype(np.uint8)
    expected = predict_cli(tmp_path, monkeypatch, checkpoint, "a.png",
                           png(Image.fromarray(digit)), "--raw")
    answer = client.post("/api/predict", json=digit.tolist())
    assert answer.status_code == 200
    assert answer.json() == [dict(expected[0], file="array")]


@pytest.mark.parametrize("body, status, message", [
    ({"files": {"file": ("notes.txt", b"three apples\n")}}, 422, "not an image"),
    ({"files": {"file": ("blank.png", png(Image.new("L", (280, 280), 255)))}}, 422,
     "no ink found"),
    ({"files": {"file": ("big.png", png_header_only(6000, 4001))}}, 422, "6000x4001 pixels"),
    ({"files": {"file": ("huge.png", png_header_only(20000, 20000))}}, 422,
     "decompression bomb"),
    ({"files": {"file": ("cut.png", drawing()[:300])}}, 422, "cannot decode"),
    ({"files": {"file": ("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n")}},
     422, "not an image in a format"),
    ({"files": {"file": ("empty.png", b"")}}, 422, "the file is empty"),
    ({"content": b""}, 400, "no image"),
    ({"files": {"note": (None, "no file here")}}, 400, "the form has no file"),
    ({"files": [("a", ("a.png", drawing())), ("b", ("b.png", drawing()))]}, 400,
     "Too many files"),
    ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
     400, "the form cannot be read"),
    ({"content": b"[[1, 2", "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ({"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400,
     "nested too deeply"),
    ({"json": [[0] * 28] * 27}, 422, "27 rows of 28"),
    ({"json": [[0] * 28] * 27 + [[0] * 3]}, 422, "28x28"),
    ({"json": {"pixels": 1}}, 422, "28x28"),
    ({"json": [["a"] * 28] * 28}, 422, "numbers"),
    ({"json": [[300] * 28] * 28}, 422, "from 0 to 255"),
    ({"content": json.dumps([[float("nan")] * 28] * 28).encode(),
      "headers": {"content-type": "application/json"}}, 422, "finite"),
    ({"files": {"file": ("big.png", drawing())}, "params": {"raw": "1"}}, 422,
     "28x28"),
    ({"files": {"file": ("d.png", drawing())}, "params": {"raw": "maybe"}}, 400, "?raw="),
    ({"content": b"x" * 200_001}, 413, "larger than"),
    ({"content": iter([b"x" * 150_000, b"x" * 150_000])}, 413, "larger than"),
])
def test_bad_input_gets_a_4xx_with_a_json_error(client, body, status, message):
    response = client.post("/api/predict", **body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert "Traceback" not in response.text


def test_wrong_methods_and_unknown_paths_get_json_errors(client):
    assert client.get("/api/predict").status_code == 405
    assert "not allowed" in client.get("/api/predict").json()["error"]
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and "no such page" in missing.json()["error"]


@pytest.mark.parametrize("path", [
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
    "/static/%2e%2e%2f%2e%2e%2fweights.py", "/static//etc/passwd", "/static/../../__init__.py",
    "/static/%2fetc%2fpasswd",
])
def test_static_files_cannot_be_read_outside_the_package(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text and "root:" not in response.text


def test_a_loopback_server_answers_only_its_own_host_names(checkpoint):
    app = create_app(checkpoint, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        assert local.get("/").status_code == 200
        assert local.get("/", headers={"host": "localhost:8000"}).status_code == 200
        assert local.get("/", headers={"host": "evil.example:8000"}).status_code == 400


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda cut, flips: _damaged(cut, flips), st.integers(8, 4000),
              st.lists(st.tuples(st.integers(0, 3999), st.integers(0, 255)), max_size=8))))
def test_arbitrary_bytes_never_get_a_server_error(client, data):
    response = client.post("/api/predict", files={"file": ("x.png", data)})
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code != 200:
        assert response.json()["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=3),
    max_leaves=100) | st.one_of(*(arrays(dtype, (28, 28)).map(np.ndarray.tolist)
                                  for dtype in (np.float64, np.int64, np.bool_))))
def test_arbitrary_json_never_gets_a_server_error(client, value):
    body = json.dumps(value).encode()
    response = client.post("/api/predict", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code in (200, 400, 422), response.text


def _damaged(cut: int, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(drawing()[:cut])
    for index, value in flips:
        if index < len(data):
            data[index] = value
    return bytes(data)


def test_concurrent_predictions_match_sequential_ones(checkpoint):
    predictor = Predictor(checkpoint, workers=3)
    images = [drawing(seed) for seed in range(12)]
    expected = [predictor.image(data, "d.png").probabilities for data in images]
    results: dict[int, list] = {}

    def work(worker: int) -> None:
        results[worker] = [predictor.image(images[(worker + i) % 12], "d.png").probabilities
                           for i in range(24)]

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker, answers in results.items():
        for i, p in enumerate(answers):
            np.testing.assert_array_equal(p, expected[(worker + i) % 12])


def test_nothing_is_written_to_disk(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client.post("/api/predict", files={"file": ("d.png", drawing())})
    client.post("/api/predict", files={"file": ("t.txt", b"text")})
    client.post("/api/predict", json=[[0] * 28] * 28)
    assert list(tmp_path.iterdir()) == []


def test_a_large_upload_stays_in_memory(checkpoint, monkeypatch):
    import tempfile

    def no_files(*args, **kwargs):
        raise AssertionError("a temporary file was created")

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, no_files)
    image = Image.open(io.BytesIO(drawing())).convert("RGB").resize((820, 820))
    buffer = io.BytesIO()
    image.save(buffer, "BMP")  # 2 MB: Starlette would spool a file part over 1 MB to disk
    assert len(buffer.getvalue()) > 2_000_000
    with TestClient(create_app(checkpoint, max_body=3_000_000)) as client:
        response = client.post("/api/predict", files={"file": ("d.bmp", buffer.getvalue())})
    assert response.status_code == 200, response.text


def test_serve_without_the_extra_says_what_to_install(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "w.npz")])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: nnctl serve needs the serve extra; install it "
                                     f"with: {sys.executable} -m pip install 'starlette>=0.40' "
                                     "'uvicorn>=0.30' 'python-multipart>=0.0.18'")


def test_serve_with_a_missing_weights_file_or_a_busy_port_is_one_line(checkpoint, tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "none.npz")])
    assert result.exit_code == 2 and "no such weights file" in result.output
    (tmp_path / "c.yaml").write_text("model: {}\n")
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "is a YAML config, not a weights file" in result.output
    weights.save(tmp_path / "w.npz", checkpoint)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", str(tmp_path / "w.npz"), "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); pick another "
        f"with --port"]


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_serve_warns_in_one_line_when_not_bound_to_loopback(checkpoint, tmp_path, monkeypatch,
                                                           host, warned):
    import uvicorn

    from nnctl.serve import server

    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.update(
        app=self.config.app, address=sockets[0].getsockname()))
    weights.save(tmp_path / "w.npz", checkpoint)
    said, warnings = [], []
    server.serve(tmp_path / "w.npz", host, 0, say=said.append, warn=warnings.append)
    assert served["address"][0] == host
    assert said == [f"nnctl serve: {tmp_path / 'w.npz'} at http://127.0.0.1:"
                    f"{served['address'][1]}/ (Ctrl-C to stop)"]
    assert len(warnings) == warned
    if warned:
        assert warnings[0].startswith("warning: listening on 0.0.0.0: anyone who can reach")


def test_open_shows_the_page_in_the_browser_once_the_server_has_started(checkpoint, tmp_path,
                                                                       monkeypatch):
    import time
    import webbrowser

    import uvicorn

    from nnctl.serve import server

    def run(self, sockets):
        time.sleep(0.2)
        assert opened == []  # not before the server is up
        self.started = True
        time.sleep(0.3)

    opened: list[str] = []
    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(webbrowser, "open", opened.append)
    weights.save(tmp_path / "w.npz", checkpoint)
    said: list[str] = []
    server.serve(tmp_path / "w.npz", "127.0.0.1", 0, open_browser=True, say=said.append)
    assert len(opened) == 1 and opened[0] in said[0]
