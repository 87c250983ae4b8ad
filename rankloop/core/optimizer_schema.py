"""RankSGD's options as a typed, validated request model (for a campaign's ``optimizer``).

:mod:`rankloop.core.optimizer.options` owns the options: their names, defaults and rules
(:func:`~rankloop.core.optimizer.options.resolve_options`). This model adds what a request
needs on top: each option's JSON type and plain range, so that the API refuses a wrong type or
a non-finite number at once and documents the options. Defaults are read from
``DEFAULT_OPTIONS``, and the rules that tie options together are enforced by running
``resolve_options`` itself; ``tests/test_hostile_input.py`` checks that the fields here are
exactly the options there.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rankloop.core.optimizer.options import DEFAULT_OPTIONS, SCHEDULES, resolve_options

Schedule = Literal[SCHEDULES]  # type: ignore[valid-type]


def _whole(value: Any) -> Any:
    # JSON has one number type: 6.0 is the integer 6 (as JSON Schema says), 6.5 is none.
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: An integer in strict models: a whole float is taken, a string or a boolean is not.
Integer = Annotated[int, BeforeValidator(_whole)]


def _default(name: str) -> Any:
    return Field(default=DEFAULT_OPTIONS[name])


class OptimizerOptions(BaseModel):
    """The options an owner may set; unset ones keep the optimizer's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    schedule: Schedule = _default("schedule")
    step: float | None = Field(default=DEFAULT_OPTIONS["step"], gt=0)
    radius_ratio: float | None = Field(default=DEFAULT_OPTIONS["radius_ratio"], gt=0)
    min_radius: float = Field(default=DEFAULT_OPTIONS["min_radius"], ge=0)
    gradient_rounds: Integer = Field(default=DEFAULT_OPTIONS["gradient_rounds"], ge=1, le=1000)
    momentum: float = Field(default=DEFAULT_OPTIONS["momentum"], ge=0, lt=1)
    sgd_moves: bool = _default("sgd_moves")
    shell: bool = _default("shell")
    adapt_metric: bool | None = _default("adapt_metric")
    metric_rate: float = Field(default=DEFAULT_OPTIONS["metric_rate"], ge=0)
    min_visible: float = Field(
        default=DEFAULT_OPTIONS["min_visible"],
        ge=0,
        le=1,
        description="at most max_visible (RMS pixel change over the full range)",
    )
    max_visible: float = Field(
        default=DEFAULT_OPTIONS["max_visible"],
        ge=0,
        le=1,
        description="at least min_visible (RMS pixel change over the full range)",
    )
    follow_agreement: bool = Field(
        default=DEFAULT_OPTIONS["follow_agreement"],
        description="move the visible floor (from min_visible up to max_visible) with how "
        "consistently the crowd ranks: wider after a round people could not tell apart",
    )

    @model_validator(mode="after")
    def _rules(self) -> OptimizerOptions:
        resolve_options(self.given())  # the rules between options live there, once
        return self

    def given(self) -> dict[str, Any]:
        """The options the owner set, and only those."""
        return self.model_dump(exclude_unset=True)


__all__ = ["Integer", "OptimizerOptions"]
