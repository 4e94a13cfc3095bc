"""The building blocks of the schema: strict models, checks across fields, durations, paths.

Every model rejects unknown keys (`StrictModel`); `CrossChecked` reports checks across fields
together with the field errors; durations are Prometheus-style (`90s`, `1h30m`); an error's
location is written as a path (`targets[0].instances[2].id`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

Service = Literal["dcs", "kafka", "rabbitmq", "rocketmq"]
SERVICES: tuple[Service, ...] = get_args(Service)

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# No setting needs more: a bound keeps sleeps and date arithmetic finite (`1e400s` is infinity).
MAX_DURATION = 366 * 86400.0


def parse_duration(value: Any) -> float:
    """`90s`, `5m`, `1h30m`, `500ms`, `2d`, `1w` to seconds. Bare numbers are refused.

    Refusing `60` avoids guessing whether the user meant seconds or minutes. The value is
    never quoted back: a secret pasted into the wrong key must not reach the error.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("must be a duration string such as 30s, 5m or 1h")
    text = value.strip()
    if len(text) > 1000 or not _DURATION_RE.match(text):
        raise ValueError("invalid duration: use a number and a unit (ms, s, m, h, d, w)")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))
    if not seconds <= MAX_DURATION:  # also false for infinity
        raise ValueError("durations must be at most 366d")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{int(seconds * 1000)}ms"


def _at_least_1s(seconds: float) -> float:
    if seconds < 1:
        raise ValueError("must be at least 1s")
    return seconds


def _above_0(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be above 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
Interval = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_at_least_1s)]
Timeout = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_above_0)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


Loc = tuple[str | int, ...]


class CrossChecked(StrictModel):
    """A model with checks across its fields, reported together with the field errors.

    Pydantic runs `after` model validators only once every field is valid, so a file with
    a typo and a poll_interval above lookback would need two rounds of fixes. Checks here
    read the raw input instead (skipping values that are invalid on their own, which the
    field errors already report) and point at the key concerned.
    """

    @classmethod
    def cross_checks(cls, data: Mapping[str, Any], context: Any) -> list[tuple[Loc, str]]:
        """(location relative to this model, message) of every problem across fields."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checked(
        cls, data: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        problems = cls.cross_checks(data, info.context) if isinstance(data, Mapping) else []
        try:
            model = handler(data)
        except ValidationError as exc:
            if not problems:
                raise
            errors = [
                InitErrorDetails(
                    type=PydanticCustomError(e["type"], e["msg"]), loc=e["loc"], input=None
                )
                for e in exc.errors(include_url=False)
            ]
        else:
            if not problems:
                return model
            errors = []
        errors += [
            InitErrorDetails(type=PydanticCustomError("cross_field", msg), loc=loc, input=None)
            for loc, msg in problems
        ]
        raise ValidationError.from_exception_data(cls.__name__, errors)


def raw_duration(model: type[BaseModel], data: Mapping[str, Any], key: str) -> float | None:
    """A duration as given (None when invalid: reported on its own), else its default."""
    if key not in data:
        default = model.model_fields[key].default
        return float(default)
    try:
        return parse_duration(data[key])
    except ValueError:
        return None


def not_below(
    model: type[BaseModel], data: Mapping[str, Any], low: str, high: str
) -> list[tuple[Loc, str]]:
    """`high` must be at least `low`; reported at whichever of the two the file sets."""
    lo, hi = raw_duration(model, data, low), raw_duration(model, data, high)
    if lo is None or hi is None or hi >= lo:
        return []
    if high in data:
        return [((high,), f"must be at least {low} ({format_duration(lo)})")]
    return [((low,), f"must not be above {high} ({format_duration(hi)} by default)")]


def check_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^/\s?#]+(/[^\s?#]*)?$", value):
        raise ValueError("must be an http(s) URL such as https://dcs.eu-west-101.myhuaweicloud.eu")
    return value.rstrip("/")


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"
