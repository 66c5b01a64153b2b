"""Tune, compare, import and predict: agehpo <command> (or python -m agehpo)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agehpo.cliparse import (
    EXIT_USAGE,
    OneLineParser,
    int_flag,
    json_object,
    timeout_flag,
    yes_no_flag,
)
from agehpo.config import Role, StudyConfig
from agehpo.errors import ConfigError, UserError, WorkersFailedError, quote
from agehpo.hpo.stopping import OrderlyStop
from agehpo.validation import validate_compare, validate_storage, validate_study_config

if TYPE_CHECKING:
    from agehpo.study import StudyResult

EXIT_FAILED = 1
EXIT_SIGINT = 130


def _flag_type(config_field: dataclasses.Field[Any]) -> Callable[[str], Any]:
    if config_field.name == "sampler_kwargs":
        return json_object
    if config_field.name == "timeout":
        return timeout_flag
    if config_field.type == "int":
        return int_flag(config_field.name, config_field.metadata["minimum"])
    return str


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one --kebab-case flag per StudyConfig field, with its help text and default."""
    defaults = StudyConfig()
    for config_field in dataclasses.fields(StudyConfig):
        default = getattr(defaults, config_field.name)
        parser.add_argument(
            f"--{config_field.name.replace('_', '-')}",
            dest=config_field.name,
            type=_flag_type(config_field),
            default=default,
            help=f"{config_field.metadata['help']} (default: {json.dumps(default)})",
        )


def study_config(args: argparse.Namespace) -> StudyConfig:
    """The StudyConfig the parsed flags describe."""
    return StudyConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StudyConfig)})


def _cmd_study(args: argparse.Namespace) -> int:
    config = study_config(args)
    validate_study_config(config)  # before any store is opened, and before heavy imports
    from agehpo.study import run_study

    if args.command == "worker":
        result = run_study(config, track=True, role=Role.WORKER, stop=args.stop)
        print(f"Worker finished: ran trials {result.ran}")
        return 0
    role = Role.LAUNCHER if config.n_workers > 1 or config.cluster else Role.SINGLE
    result = run_study(config, track=True, role=role, stop=args.stop)
    print(format_summary(result, config))
    return 0


def format_summary(result: StudyResult, config: StudyConfig) -> str:
    """The seed's end-of-study summary; accuracies as percentages."""
    from optuna.trial import TrialState

    from agehpo.evaluation import format_head

    counts = result.counts
    finished = sum(counts[state.name] for state in TrialState if state.is_finished())
    lines = [
        f"Study {config.study_name!r} (this run: sampler {config.sampler}, pruner {config.pruner})",
        f"  Trials run now: {len(result.ran)}",
        "Study statistics:",
        f"  Number of finished trials: {finished}",
        f"  Number of pruned trials: {counts['PRUNED']}",
        f"  Number of complete trials: {counts['COMPLETE']}",
        f"  Number of failed trials: {counts['FAIL']}",
    ]
    try:
        best = result.study.best_trial
    except ValueError:
        return "\n".join([*lines, "No trial completed, so there is no best trial yet."])
    lines += [
        f"Best trial: #{best.number}",
        f"  Validation age accuracy: {100 * (best.value or 0.0):.2f} %",
        "  Params:",
        *(f"    {name}: {value}" for name, value in sorted(best.params.items())),
    ]
    if result.test is not None:
        how = {
            "kept": "its kept weights",
            "logged": "its weights, logged when it ran",
            "retrained": "retrained from best_params",
        }[result.test_source]
        lines.append(f"  Test age accuracy ({how}): {100 * result.test.age_accuracy:.2f} %")
    if result.card is not None:
        lines += ["  Per age range on the test split:", *format_head(result.card.heads["age"])]
    return "\n".join([*lines, *result.notes])


def _cmd_make_data(args: argparse.Namespace) -> int:
    from agehpo.data import make_synthetic, write_csv

    table = make_synthetic(args.n_samples, args.seed)
    write_csv(table, args.out)
    print(f"Wrote {len(table)} synthetic faces to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ConfigError(
            f"out={quote(args.out)}: its folder does not exist; create it or write elsewhere"
        )
    from agehpo.data import age_to_bin
    from agehpo.predict import load_checked, read_faces

    pixels, ages = read_faces(args.data)  # the input first: it is cheaper than the model
    predictions = load_checked(args.model).predict_pixels(pixels)
    if args.out:
        predictions.to_csv(args.out, index=False)
        print(f"Wrote {len(predictions)} predictions to {args.out}")
    else:
        print(predictions.to_string(index=False, max_rows=20))
    if ages is not None:
        from agehpo.evaluation import evaluate_head, format_head

        # The champion's report card table (agehpo.evaluation), for these rows.
        report = evaluate_head("age", age_to_bin(ages), predictions["age_bin"].to_numpy())
        print(f"Age-range accuracy on {len(ages)} labelled rows: {100 * report.accuracy:.2f} %")
        print("\n".join(format_head(report)))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    config = study_config(args)
    samplers = validate_compare(config, args.samplers, args.repeats)
    from agehpo.compare import run_compare

    run_compare(
        config, samplers, args.repeats, stop=args.stop, register_models=args.register_models
    )
    return 0


def _cmd_import_study(args: argparse.Namespace) -> int:
    from optuna_mlflow import StudyImportError, import_study

    # A damaged journal, or a file that is not there (Optuna would create an empty one).
    validate_storage(args.storage, must_exist=True)
    try:
        imported = import_study(
            args.storage, args.study_name or None, experiment_name=args.experiment_name or None
        )
    except StudyImportError as error:  # the plugin knows nothing of agehpo's UserError
        raise ConfigError(str(error)) from error
    if run_id := os.environ.get("MLFLOW_RUN_ID"):  # under `mlflow run -e import_study`
        from agehpo.tracking.runs import record_import

        record_import(run_id, args.storage, imported)
    for study in imported:
        if study.tracked_elsewhere:
            print(
                f"Skipped study {study.study_name!r}: its runs are already in experiment "
                f"{study.experiment_id} (tracked live); import with --experiment-name of that "
                "experiment to complete them there"
            )
            continue
        old = study.upgraded_from
        note = f" (read an upgraded copy of a v{old} schema)" if old else ""
        print(
            f"Imported study {study.study_name!r} into experiment {study.experiment_id}: "
            f"{study.created} new trial runs, {study.updated} completed, "
            f"{study.unchanged} unchanged{note}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``agehpo`` parser with all subcommands."""
    parser = OneLineParser(prog="agehpo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    study = commands.add_parser("study", help="tune the age model (the MLproject main entry)")
    add_study_arguments(study)
    study.set_defaults(handler=_cmd_study)

    worker = commands.add_parser(
        "worker", help="run trials of an existing study until its budget is met (no summary)"
    )
    add_study_arguments(worker)
    worker.set_defaults(handler=_cmd_study)

    compare = commands.add_parser(
        "compare", help="compare samplers on the same budget, several seeded repeats each"
    )
    compare.add_argument(
        "--samplers", default="skopt,random,tpe", help="comma-separated sampler names"
    )
    compare.add_argument(
        "--repeats", type=int_flag("repeats"), default=3, help="studies per sampler"
    )
    compare.add_argument(
        "--register-models",
        type=yes_no_flag("register_models"),
        default=False,
        help="true: register each study's best model as {model_name}-{sampler}-r{k}",
    )
    add_study_arguments(compare)
    compare.set_defaults(handler=_cmd_compare)

    import_parser = commands.add_parser(
        "import-study", help="mirror existing Optuna studies into MLflow, without rerunning"
    )
    import_parser.add_argument(
        "--storage", default=StudyConfig.storage, help="Optuna storage URL or file"
    )
    import_parser.add_argument("--study-name", default="", help="one study (default: all)")
    import_parser.add_argument(
        "--experiment-name", default="", help="MLflow experiment (default: the study's name)"
    )
    import_parser.set_defaults(handler=_cmd_import_study)

    make_data = commands.add_parser("make-data", help="write the synthetic faces as a CSV")
    make_data.add_argument("--out", required=True, help="CSV path to write")
    make_data.add_argument("--n-samples", type=int_flag("n_samples"), default=StudyConfig.n_samples)
    make_data.add_argument("--seed", type=int_flag("seed", None), default=StudyConfig.seed)
    make_data.set_defaults(handler=_cmd_make_data)

    predict = commands.add_parser("predict", help="predict age ranges with a logged model")
    predict.add_argument("--model", default="models:/age-predictor@champion", help="model URI")
    predict.add_argument("--data", required=True, help="CSV with a pixels column")
    predict.add_argument("--out", help="write predictions here instead of printing them")
    predict.set_defaults(handler=_cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; SIGINT, SIGTERM and a dead supervisor start one orderly stop.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status.
    """
    args = build_parser().parse_args(argv)
    # MLflow's per-file download bars would break up the summary (the user may turn them on).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    stop = OrderlyStop()
    args.stop = stop
    # Installed for good: a signal while the process winds down must not raise either.
    stop.install(watch_parent="MLFLOW_RUN_ID" in os.environ)
    try:
        status: int = args.handler(args)
        return status
    except (UserError, WorkersFailedError) as error:
        print(f"agehpo: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UserError) else EXIT_FAILED
    except KeyboardInterrupt:
        how = "interrupted" if stop.exit_code in (0, EXIT_SIGINT) else "terminated"
        print(
            f"agehpo: {how} ({stop.reason or 'SIGINT'}); running trials were marked FAIL "
            "and are retried by the next run",
            file=sys.stderr,
        )
        return stop.exit_code or EXIT_SIGINT
    finally:
        stop.done()


if __name__ == "__main__":
    sys.exit(main())
