"""Many machines: two `nnctl tune` processes share one study on a real PostgreSQL server,
started by the fixture from Debian's postgresql package into a temporary directory."""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")
pytest.importorskip("psycopg", reason="PostgreSQL's driver (the postgres extra) is not installed")

from tests.test_search_study import finish, nnctl, tiny_config, trials_of  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1 at a free port, trust authentication, run as an
    unprivileged user (the server refuses root); its URL, and the whole thing removed after."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="nnctl-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to start PostgreSQL unprivileged")
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = root / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], cwd=root, check=True, capture_output=True,
                       timeout=120)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
            "-o", f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "start")
    except subprocess.CalledProcessError as error:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {error.stderr.decode(errors='replace')[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], cwd=root, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_machines_share_one_study_on_postgresql(tmp_path, mnist_cache, postgres):
    def machine(name: str, trials: int):
        """Each "machine" has its own folder and runs the same command."""
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        config = tiny_config(folder, "digits")
        return nnctl("tune", config, "--storage", postgres, "--trials", trials,
                     "--data-dir", mnist_cache, "--pruner", "none", "--out",
                     folder / "best.yaml", cwd=folder)

    # One machine starts the study; then both work on it at once. A tiny trial takes less
    # time than a process takes to start, so with both started together one machine could
    # run them all: the first phase makes sure the study holds more than one worker's trials.
    phases = (lambda: [machine("a", 2)], lambda: [machine("a", 6), machine("b", 6)])
    for start in phases:
        for process in start():
            code, out, err = finish(process)
            assert code == 0, err
            assert "study 'digits' in postgresql://postgres@127.0.0.1" in out
    stored = trials_of(postgres, "digits")
    assert [t.number for t in stored] == list(range(len(stored)))
    assert 6 <= len(stored) <= 7  # each machine may start one as the other finishes
    assert all(t.state.name == "COMPLETE" for t in stored)
    assert len({t.user_attrs["worker"] for t in stored}) >= 2  # one process per phase at least
    assert not list(tmp_path.glob("*/tune.db"))  # nothing went to the default SQLite file
    # Each machine writes the best trial the study held when it finished: the one that
    # finished first may not have seen a trial the other completed later, nor one whose
    # completion was stamped but not yet committed as it read the study (a second's grace).
    files = {}
    for name in ("a", "b"):
        written = tmp_path / name / "best.yaml"
        at = datetime.fromtimestamp(written.stat().st_mtime)
        found = re.search(r"# The best trial \((\d+)\) of study 'digits'", written.read_text())
        assert found, written.read_text()
        named = stored[int(found.group(1))]
        assert named.datetime_complete <= at
        earlier = [t.value for t in stored if t.datetime_complete <= at - timedelta(seconds=1)]
        assert named.value >= max(earlier, default=named.value)
        files[at] = named.number
    best = max(stored, key=lambda t: (t.value, -t.number))
    assert files[max(files)] == best.number  # the last to finish saw every trial
