"""Command-line texts to values, and one-line usage errors that name the parameter, quote the
value and say what is accepted: ``n_trials='abc' is not an integer; expected an integer >= 1``."""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

from agehpo.errors import MAX_SHOWN, ConfigError, quote
from agehpo.validation import check_timeout

EXIT_USAGE = 2


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def int_flag(name: str, minimum: int | None = 1) -> Callable[[str], int]:
    """The argparse type of integer flag ``name`` >= ``minimum`` (Projects may pass ``20.0``)."""
    rule = "an integer" if minimum is None else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            number = _number(text)
            if not (math.isfinite(number) and number.is_integer()):
                raise argparse.ArgumentTypeError(
                    f"{name}={quote(text)} is not an integer; expected {rule}"
                ) from None
            value = int(number)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{name}={quote(text)} is too small; expected {rule}")
        return value

    return parse


def yes_no_flag(name: str) -> Callable[[str], bool]:
    """The argparse type of a true/false flag ``name`` (an MLproject parameter is a string)."""

    def parse(text: str) -> bool:
        if text.strip().lower() not in ("true", "false"):
            raise argparse.ArgumentTypeError(f"{name}={quote(text)} is not true or false")
        return text.strip().lower() == "true"

    return parse


def timeout_flag(text: str) -> float:
    """The argparse type of ``timeout``: seconds >= 0, 0 for no limit."""
    value = _number(text)
    try:
        check_timeout(value, shown=text)
    except ConfigError as error:  # (argparse would replace a ValueError's message)
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def one_line(message: str) -> str:
    """A message folded to one line, with long quoted values cut (for argparse's own texts)."""
    message = " ".join(message.split())
    return re.sub(rf"'([^']{{{MAX_SHOWN + 1},}})'", lambda m: quote(m.group(1)), message)


def json_object(text: str) -> dict[str, Any]:
    """The argparse type of ``sampler_kwargs``: a JSON object."""
    example = 'expected an object such as \'{"base_estimator": "GP"}\''
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"sampler_kwargs={quote(text)} is not valid JSON ({error.msg} at column "
            f"{error.colno}); {example}"
        ) from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"sampler_kwargs={quote(text)} is a JSON {type(value).__name__}; {example}"
        )
    return value


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line, ``agehpo: error: ...``, exit 2, without the usage block."""

    def error(self, message: str) -> NoReturn:
        # Our texts start with the parameter: argparse's ``argument --x:`` would repeat it.
        parts = message.split(": ", 1)
        if parts[0].startswith("argument ") and len(parts) == 2 and "=" in parts[1][:60]:
            message = parts[1]
        else:
            message += f" (see: {self.prog} --help)"
        self.exit(EXIT_USAGE, f"agehpo: error: {one_line(message)}\n")
