"""Every bad input stops the CLI with one line, exit 2, and nothing written anywhere.

Each case runs the real command (``cli.main``) against real stores in ``tmp_path``: an
Optuna SQLite file or journal, and MLflow's ``sqlite:///{tmp_path}/mlflow.db``. None may
hold a study, a run, an experiment besides Default, or a registered model afterwards.
The runs are kept tiny in case a check ever lets one through.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from agehpo.cli import main
from agehpo.data import make_synthetic, write_csv
from agehpo.errors import MAX_SHOWN, quote, quote_path

TINY = ["--n-trials", "1", "--n-epochs", "1", "--n-samples", "60", "--img-size", "8"]
TINY += ["--device", "cpu", "--sampler", "random"]


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    return {"tracking": tracking, "storage": f"sqlite:///{tmp_path}/optuna.db"}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; return its one stderr line after checking exit 2 and the one line."""
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_info:  # argparse's errors
        status = int(exit_info.code or 0)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err[-2000:]
    assert len(lines) == 1, err[-2000:]
    line = lines[0]
    assert line.startswith("agehpo: error: ") and line.isprintable()
    assert "Traceback" not in err and "usage:" not in err
    assert "Error:" not in line and "_positive_int" not in line  # no private type names
    return line


def _assert_nothing_written(tmp_path: Path, stores: dict[str, str]) -> None:
    """No Optuna study, no MLflow run, experiment (but Default) or registered model."""
    if Path(stores["storage"].removeprefix("sqlite:///")).exists():
        assert optuna.get_all_study_summaries(stores["storage"]) == []
    if Path(stores["tracking"].removeprefix("sqlite:///")).exists():
        from mlflow import MlflowClient

        client = MlflowClient(stores["tracking"])
        assert [e.name for e in client.search_experiments()] == ["Default"]
        assert client.search_runs(["0"]) == []
        assert client.search_registered_models() == []
    assert not (tmp_path / "mlruns").exists()


def _faces_csv(path: Path, n: int = 12) -> Path:
    write_csv(make_synthetic(n, seed=3), path)
    return path


def _write_bad_files(tmp_path: Path) -> None:
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 12)
    late_bad = _faces_csv(tmp_path / "late.csv", 30)
    rows = late_bad.read_text().splitlines()
    rows[-1] = "x" + rows[-1]  # a bad age on the last row: the whole file is checked
    late_bad.write_text("\n".join(rows) + "\n")


# Case -> (flags, fragments the line must hold: the parameter and its value); {tmp} is
# the test's tmp_path.
STUDY_CASES: dict[str, tuple[list[str], list[str]]] = {
    "model_name with a slash": (["--model-name", "team/age"], ["model_name='team/age'"]),
    "model_name ..": (["--model-name", ".."], ["model_name='..'"]),
    "missing data file": (["--data", "{tmp}/nope.csv"], ["data=", "nope.csv", "not found"]),
    "binary data file": (["--data", "{tmp}/binary.csv"], ["data=", "binary.csv", "not a text"]),
    "bad last row": (["--data", "{tmp}/late.csv"], ["data=", "late.csv", "line 31", "'age'"]),
    "unknown sampler": (["--sampler", "xyz"], ["sampler='xyz'"]),
    "unknown pruner": (["--pruner", "xyz"], ["pruner='xyz'"]),
    "img_size too large": (["--img-size", "100"], ["img_size='100'", "1..48"]),
    "img_size zero": (["--img-size", "0"], ["img_size='0'"]),
    "skopt base_estimator": (
        ["--sampler", "skopt", "--sampler-kwargs", '{"base_estimator": "XYZ"}'],
        ["sampler_kwargs=", "XYZ", "skopt"],
    ),
    "600-character study_name": (
        ["--study-name", "s" * 600],
        ["study_name='sss", "600 characters", "at most 200"],
    ),
    "empty study_name": (["--study-name", ""], ["study_name=''", "empty"]),
    "study_name with a newline": (["--study-name", "a\nb"], ["study_name='a\\nb'"]),
    "negative timeout": (["--timeout", "-5"], ["timeout='-5'", ">= 0"]),
    "non-numeric n_trials": (["--n-trials", "abc"], ["n_trials='abc'", "integer >= 1"]),
    "fractional n_trials": (["--n-trials", "2.5"], ["n_trials='2.5'"]),
    "unknown device": (["--device", "tpu"], ["device='tpu'"]),
    "negative seed": (["--seed", "-3"], ["seed='-3'", "0..2147483647"]),
    "storage that is no URL": (["--storage", "nonsense"], ["storage='nonsense'"]),
    "storage of an unknown database": (["--storage", "foo://h/db"], ["storage='foo://h/db'"]),
    "sqlite in a missing folder": (
        ["--storage", "sqlite:///{tmp}/no/such/dir/o.db"],
        ["storage=", "does not exist"],
    ),
    "cluster that is no address": (["--cluster", "nonsense"], ["cluster='nonsense'"]),
    "SQLite with a remote cluster": (
        ["--cluster", "tcp://127.0.0.1:9"],
        ["storage=", "with cluster='tcp://127.0.0.1:9'", "SQLite", "postgresql://"],
    ),
    "relative journal with a remote cluster": (
        ["--cluster", "tcp://127.0.0.1:9", "--storage", "optuna.journal"],
        ["storage='optuna.journal'", "relative path", "absolute path"],
    ),
    "local tracking store with a remote cluster": (
        ["--cluster", "tcp://127.0.0.1:9", "--storage", "postgresql://postgres@127.0.0.1/test"],
        ["MLFLOW_TRACKING_URI=", "with cluster=", "mlflow server"],
    ),
}


@pytest.mark.parametrize("command", ["study", "worker"])
@pytest.mark.parametrize("case", list(STUDY_CASES))
def test_bad_study_input_gives_one_line_and_writes_nothing(
    command: str,
    case: str,
    tmp_path: Path,
    stores: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write_bad_files(tmp_path)
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in STUDY_CASES[case][0]]
    fragments = STUDY_CASES[case][1]
    argv = [command, *TINY, "--storage", stores["storage"], *flags]
    line = _run(argv, capsys)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    _assert_nothing_written(tmp_path, stores)


@pytest.mark.slow  # the scheduler gets its full 10 s to answer
def test_a_scheduler_that_does_not_answer_is_one_line_and_nothing_written(
    tmp_path: Path,
    stores: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from _procs import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    cluster = f"tcp://127.0.0.1:{free_port()}"
    journal = tmp_path / "optuna.journal"
    line = _run(["study", *TINY, "--cluster", cluster, "--storage", str(journal)], capsys)
    assert f"cluster='{cluster}' did not answer within 10 s" in line
    assert not journal.exists() and not (tmp_path / "mlflow.db").exists()


def _damaged_journal(path: Path) -> Path:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="old", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + b"\n"  # a cut line in the middle
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("command", ["study", "worker", "import-study"])
def test_a_journal_damaged_in_the_middle_gives_one_line(
    command: str, tmp_path: Path, stores: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    journal = _damaged_journal(tmp_path / "x.journal")
    before = journal.read_bytes()
    flags = TINY if command != "import-study" else []
    line = _run([command, *flags, "--storage", str(journal)], capsys)
    assert f"storage={quote_path(str(journal))} line 3 is damaged" in line
    assert "head -n 2" in line
    assert journal.read_bytes() == before  # not repaired behind the user's back
    _assert_nothing_written(tmp_path, stores)


def test_compare_checks_every_sampler_and_the_derived_names(
    tmp_path: Path, stores: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["compare", *TINY, "--storage", stores["storage"], "--repeats", "1"]
    line = _run([*base, "--samplers", "random,nope"], capsys)
    assert "sampler='nope'" in line
    line = _run([*base, "--samplers", "random,random"], capsys)
    assert "samplers='random,random'" in line
    # 195 characters pass for study, but compare appends "-random-r1".
    line = _run([*base, "--samplers", "random", "--study-name", "c" * 195], capsys)
    assert "study_name=" in line and "at most 190" in line and "suffix" in line
    line = _run([*base, "--samplers", "random", "--repeats", "0"], capsys)
    assert "repeats='0'" in line
    _assert_nothing_written(tmp_path, stores)


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("empty pixels cell", ["data=", "row 1", "pixels is empty"]),
        ("header only", ["data=", "no rows"]),
        ("non-numeric age", ["data=", "row 0", "age 'old'", "1..116"]),
        ("missing file", ["data=", "is not a file"]),
        ("binary file", ["data=", "cannot be read as CSV"]),
    ],
)
def test_bad_predict_input_gives_one_line(
    case: str,
    fragments: list[str],
    tmp_path: Path,
    stores: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _faces_csv(tmp_path / "faces.csv", 3)
    rows = path.read_text().splitlines()
    if case == "empty pixels cell":
        rows[2] = rows[2].rsplit(",", 1)[0] + ","
    elif case == "header only":
        rows = rows[:1]
    elif case == "non-numeric age":
        rows[1] = "old" + rows[1][rows[1].index(",") :]
    path.write_text("\n".join(rows) + "\n")
    if case == "missing file":
        path = tmp_path / "nope.csv"
    elif case == "binary file":
        path.write_bytes(bytes(range(256)) * 12)
    # The input is checked before the model, so no model is needed to see the error.
    line = _run(["predict", "--model", str(tmp_path / "no-model"), "--data", str(path)], capsys)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert len(line) < 400
    _assert_nothing_written(tmp_path, stores)


def test_long_and_binary_values_are_quoted_short(
    tmp_path: Path, stores: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "\x1b[31m" + "A" * 3000
    line = _run(["study", *TINY, "--storage", stores["storage"], "--model-name", hostile], capsys)
    assert "\x1b" not in line and "\\x1b[31mAAA" in line
    assert len(line) < 300
    assert quote("x" * 500).endswith("...'") and len(quote("x" * 500)) == MAX_SHOWN + 2
    kwargs = json.dumps({"base_estimator": "Z" * 5000})
    argv = ["study", *TINY, "--storage", stores["storage"], "--sampler", "skopt"]
    line = _run([*argv, "--sampler-kwargs", kwargs], capsys)
    assert len(line) < 500


def test_argparse_errors_are_one_line_in_a_real_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agehpo", "study", "--n-trials", "abc"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "agehpo: error: n_trials='abc' is not an integer; expected an integer >= 1\n"
    )


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_import_from_a_store_that_does_not_exist_creates_nothing(
    kind: str, tmp_path: Path, stores: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / ("old.db" if kind == "sqlite" else "old.journal")
    url = f"sqlite:///{missing}" if kind == "sqlite" else str(missing)
    line = _run(["import-study", "--storage", url], capsys)
    assert f"storage={quote_path(url)} does not exist" in line
    assert not missing.exists()
    _assert_nothing_written(tmp_path, stores)
