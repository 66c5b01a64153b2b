"""The CLI, MLproject and conda.yaml describe the same parameters and dependencies."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from agehpo.cli import build_parser, main, study_config
from agehpo.config import StudyConfig

ROOT = Path(__file__).resolve().parents[2]


def _mlproject() -> dict:
    return yaml.safe_load((ROOT / "MLproject").read_text())


def _subcommand_defaults(name: str) -> dict[str, Any]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(subparsers.choices, dict)
    sub = subparsers.choices[name]
    return {a.dest: a.default for a in sub._actions if a.dest != "help"}


def test_mlproject_main_maps_every_cli_flag_one_to_one() -> None:
    main_entry = _mlproject()["entry_points"]["main"]
    cli_defaults = _subcommand_defaults("study")
    assert set(main_entry["parameters"]) == set(cli_defaults)
    for name, spec in main_entry["parameters"].items():
        default = cli_defaults[name]
        expected = "{}" if name == "sampler_kwargs" else default
        assert str(spec["default"]) == str(expected) or float(spec["default"]) == float(expected), (
            name
        )
        flag = f"--{name.replace('_', '-')} {{{name}}}"
        assert flag in main_entry["command"], f"{flag!r} missing from MLproject's main command"


def test_mlproject_compare_takes_every_study_parameter_and_its_own_three() -> None:
    main_entry, compare = (_mlproject()["entry_points"][n] for n in ("main", "compare"))
    own = {"samplers", "repeats", "register_models"}
    assert set(compare["parameters"]) == set(main_entry["parameters"]) | own
    for name, spec in main_entry["parameters"].items():
        assert compare["parameters"][name] == spec, name
        assert f"--{name.replace('_', '-')} {{{name}}}" in compare["command"], name


def test_readme_parameter_table_lists_every_study_parameter_with_its_default() -> None:
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", (ROOT / "README.md").read_text(), re.M)
    documented = dict(rows)
    defaults = StudyConfig()
    fields = [f.name for f in dataclasses.fields(StudyConfig)]
    assert [name for name, _ in rows if name in fields] == fields  # all of them, in order
    for name in fields:
        value = getattr(defaults, name)
        shown = json.dumps(value) if isinstance(value, dict) or value == "" else str(value)
        assert documented[name] == shown, name


def test_cli_defaults_are_the_design_defaults() -> None:
    config = study_config(build_parser().parse_args(["study"]))
    assert config == StudyConfig()
    assert (config.sampler, config.pruner, config.n_trials, config.n_epochs) == (
        "tpe",
        "median",
        20,
        50,
    )
    assert (config.storage, config.data, config.n_samples) == (
        "sqlite:///optuna.db",
        "synthetic",
        23705,
    )
    assert (config.img_size, config.batch_size, config.seed) == (24, 128, 13)
    assert (config.model_name, config.device, config.study_name) == (
        "age-predictor",
        "auto",
        "age-prediction",
    )


def test_mlflow_style_float_values_parse_as_integers() -> None:
    # MLflow passes integer parameters declared as float through as typed: "5" or "20.0".
    config = study_config(build_parser().parse_args(["study", "--n-trials", "5", "--seed", "7"]))
    assert (config.n_trials, config.seed) == (5, 7)
    argv = ["study", "--n-trials", "20.0", "--img-size", "24.0", "--seed", "-3.0"]
    config = study_config(build_parser().parse_args([*argv, "--timeout", "0.0"]))
    assert (config.n_trials, config.img_size, config.seed, config.timeout) == (20, 24, -3, 0.0)
    assert isinstance(config.n_trials, int) and isinstance(config.img_size, int)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["study", "--n-trials", "abc"],
            "n_trials='abc' is not an integer; expected an integer >= 1",
        ),
        (["study", "--n-epochs", "0"], "n_epochs='0' is too small; expected an integer >= 1"),
        (["study", "--timeout", "soon"], "timeout='soon' is not accepted; expected a number"),
        (["study", "--bogus"], "unrecognized arguments: --bogus (see: agehpo --help)"),
        (["nope"], "argument command: invalid choice: 'nope'"),
        ([], "the following arguments are required: command"),
        (["predict"], "the following arguments are required: --data (see: agehpo predict"),
    ],
)
def test_usage_errors_are_one_line_without_the_usage_block(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "usage:" not in err, err
    assert err.startswith("agehpo: error: ") and expected in err, err


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("{bad", "is not valid JSON"), ("[1, 2]", "is a JSON list; expected an object")],
)
def test_bad_sampler_kwargs_get_one_line(
    value: str, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--sampler-kwargs", value])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert fragment in line and line.startswith("agehpo: error: sampler_kwargs=")


def test_unknown_sampler_exits_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["study", "--sampler", "nope", "--storage", f"sqlite:///{tmp_path}/o.db"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "sampler='nope'" in err and "skopt" in err


def test_conda_env_pins_the_same_dependencies_as_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    assert "python=3.11" in conda["dependencies"]
    pip_list = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip_list if not p.startswith("-e")) == sorted(
        pyproject["project"]["dependencies"]
    )
    for requirement in pyproject["project"]["dependencies"]:
        assert re.search(r">=\d", requirement), f"{requirement} has no lower bound"
    assert _mlproject()["conda_env"] == "conda.yaml"


@pytest.mark.parametrize(
    ("entry_point", "subcommand"), [("compare", "compare"), ("import_study", "import-study")]
)
def test_other_entry_points_match_their_subcommands(entry_point: str, subcommand: str) -> None:
    entry = _mlproject()["entry_points"][entry_point]
    cli_defaults = _subcommand_defaults(subcommand)
    assert set(entry["parameters"]) == set(cli_defaults)
    for name, spec in entry["parameters"].items():
        default = cli_defaults[name]
        if isinstance(default, bool):  # an MLproject parameter is a string: "false"
            assert spec["default"] == str(default).lower(), name
        elif name != "sampler_kwargs":
            assert str(spec["default"]) == str(default) or float(spec["default"]) == float(default)
        assert f"--{name.replace('_', '-')} {{{name}}}" in entry["command"]
    assert entry["command"].startswith(f"python -m agehpo {subcommand}")
