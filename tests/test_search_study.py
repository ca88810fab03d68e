"""Real studies of tiny trials on the real MNIST files: worker processes sharing one SQLite
storage, a worker killed with SIGKILL, Ctrl-C, resuming, and the best config training."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")

TINY = """\
model:
  layers:
    - {units: 16, activation: relu}
    - {units: 10, activation: softmax}
data: {limit: LIMIT, validation: 500}
training:
  epochs: EPOCHS
  batch_size: 64
  optimizer: {name: sgd, momentum: 0.9}
search:
  training.learning_rate: {log_uniform: [0.02, 0.3]}
  model.layers.0.units: {choice: UNITS}
"""


def tiny_config(folder: Path, name: str, epochs: int = 2, limit: int = 2000,
                units: tuple = (8, 16)) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(TINY.replace("EPOCHS", str(epochs)).replace("LIMIT", str(limit))
                    .replace("UNITS", str(list(units))))
    return path


def nnctl(*args, cwd: Path, **kwargs) -> subprocess.Popen:
    """`nnctl ARGS` as its own process in `cwd` (where the default tune.db goes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "nnctl", *map(str, args)], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def trials_of(storage: str, name: str):
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def wait_for_a_running_epoch(storage: str, name: str, process, besides: tuple = (),
                             timeout: float = 120) -> None:
    """Until a trial (not one of the numbers `besides`) is running and has reported an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            busy = [t for t in trials_of(storage, name) if t.state.name == "RUNNING"
                    and t.intermediate_values and t.number not in besides]
        except KeyError:  # the study is not there yet
            busy = []
        if busy:
            return
        time.sleep(0.05)
    pytest.fail("no trial reported an epoch in time")


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study_and_the_best_config_trains(tmp_path, mnist_cache):
    config = tiny_config(tmp_path, "shared")
    best = tmp_path / "best.yaml"
    code, out, err = finish(nnctl("tune", config, "--trials", 4, "--jobs", 2, "--out", best,
                                  "--data-dir", mnist_cache, "--pruner", "none", "--json", cwd=tmp_path))
    assert code == 0, err
    report = json.loads(out)
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    stored = trials_of(storage, "shared")
    numbers = [t["number"] for t in report["trials"]]
    assert numbers == [t.number for t in stored] == list(range(len(stored)))
    assert 4 <= len(stored) <= 5  # two workers may each start one while the other finishes
    assert all(t.state.name == "COMPLETE" and 0.5 < t.value <= 1 for t in stored)
    assert len({t.user_attrs["worker"] for t in stored}) == 2  # both processes ran trials
    from nnctl.search.study import threads_per_worker

    assert {t.user_attrs["blas_threads"] for t in stored} == {threads_per_worker(2)}
    champion = max(stored, key=lambda t: t.value)
    assert report["best"]["number"] == champion.number

    written = yaml.safe_load(best.read_text())
    assert "search" not in written
    assert written["training"]["learning_rate"] == champion.params["training.learning_rate"]
    assert written["model"]["layers"][0]["units"] == champion.params["model.layers.0.units"]
    weights = tmp_path / "w.npz"
    code, _, err = finish(nnctl("train", best, "--out", weights, "--data-dir", mnist_cache, "-q",
                                  cwd=tmp_path))
    assert code == 0, err
    from nnctl.weights import load

    history = load(weights).history
    assert history[-1]["evaluations"]["validation"]["accuracy"] == pytest.approx(champion.value)

    code, out, _ = finish(nnctl("tune", config, "--report", cwd=tmp_path))  # runs nothing
    assert code == 0 and f"study 'shared' in sqlite:///tune.db: {len(stored)} complete" in out
    assert len(trials_of(storage, "shared")) == len(stored)

    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    from typer.testing import CliRunner

    from nnctl.cli.app import app

    figure = tmp_path / "study.png"
    result = CliRunner().invoke(app, ["plot", "--study", "shared", "--storage", storage,
                                      "-o", str(figure)])
    assert result.exit_code == 0, result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_killed_worker_and_ctrl_c_leave_a_consistent_study_that_resumes(tmp_path, mnist_cache):
    # Trials of a second or two on an idle machine: long enough to be caught mid-trial.
    config = tiny_config(tmp_path, "faults", epochs=8, limit=3000, units=(192, 256))
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    command = ["tune", config, "--trials", 2, "--data-dir", mnist_cache, "--heartbeat", 1,
               "--pruner", "none"]

    machine = nnctl(*command, cwd=tmp_path)
    wait_for_a_running_epoch(storage, "faults", machine)
    machine.kill()  # SIGKILL: no chance to mark its trial
    machine.wait()
    killed = [t for t in trials_of(storage, "faults") if t.state.name == "RUNNING"]
    assert len(killed) == 1
    time.sleep(3.5)  # the heartbeat's grace period (3 beats) passes

    machine = nnctl(*command, "--jobs", 2, cwd=tmp_path, start_new_session=True)
    wait_for_a_running_epoch(storage, "faults", machine, besides=(killed[0].number,))
    os.killpg(machine.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
    code, _, err = finish(machine)
    assert code == 130, err
    assert "interrupted; the running trials are marked failed; run the same command" in err
    assert "Traceback" not in err
    after = {t.number: t for t in trials_of(storage, "faults")}
    assert after[killed[0].number].state.name == "FAIL"  # found stale by the next worker
    assert "interrupted" not in after[killed[0].number].user_attrs
    interrupted = [t for t in after.values() if t.user_attrs.get("interrupted")]
    assert interrupted and all(t.state.name == "FAIL" for t in interrupted)
    assert not [t for t in after.values() if t.state.name == "RUNNING"]

    code, out, err = finish(nnctl(*command, "--json", cwd=tmp_path))
    assert code == 0, err
    final = trials_of(storage, "faults")
    assert [t.number for t in final] == list(range(len(final)))
    assert sum(t.state.name == "COMPLETE" for t in final) == 2
    assert sum(t.state.name == "FAIL" for t in final) == 1 + len(interrupted)
    rows = {row["number"]: row for row in json.loads(out)["trials"]}
    assert rows[killed[0].number]["error"] == "its worker stopped (killed or lost)"
    assert rows[interrupted[0].number]["error"] == "interrupted"


def test_a_study_started_from_another_config_is_refused(tmp_path):
    config = tiny_config(tmp_path, "first")
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    from nnctl.search import study as search
    from nnctl.search.space import load_space

    base, dims = load_space(config)
    search.open_study(search.Settings(storage, "first", base, tuple(dims), str(config)))
    result = finish(nnctl("tune", config, "--epochs", 5, "--trials", 1, cwd=tmp_path))
    assert result[0] == 2
    assert "error: study 'first' in sqlite:///" in result[2]
    assert "was started from" in result[2] and "name a new one with --study" in result[2]


def test_a_trial_whose_sampled_config_is_invalid_fails_with_its_reason_and_counts(tmp_path):
    # Each range is valid alone; adam with a momentum only together: caught at the trial.
    config = tmp_path / "clash.yaml"
    config.write_text(TINY.replace("EPOCHS", "1").replace("LIMIT", "2000").replace(
        "UNITS", "[8, 16]").replace(
        "optimizer: {name: sgd, momentum: 0.9}", "optimizer: sgd").replace(
        "  training.learning_rate: {log_uniform: [0.02, 0.3]}\n  model.layers.0.units: {choice: [8, 16]}",
        "  training.optimizer.name: {choice: [sgd, adam]}\n"
        "  training.optimizer.momentum: {uniform: [0.5, 0.9]}"))
    from nnctl.search import study as search
    from nnctl.search.space import load_space

    base, dims = load_space(config)
    settings = search.Settings(f"sqlite:///{tmp_path / 'tune.db'}", "clash", base, tuple(dims),
                               str(config), trials=1)
    study = search.open_study(settings)
    study.enqueue_trial({"training.optimizer.name": "adam", "training.optimizer.momentum": 0.5})
    search.run(settings)  # the enqueued trial fails before any data is read; the budget is met
    (row,) = search.rows(study)
    assert row.state == "fail" and search.counted(study) == 1
    assert row.error == (f"{config} (trial 0): training.optimizer.momentum: is not an option of "
                         "adam")
