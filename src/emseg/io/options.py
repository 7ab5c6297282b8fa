"""Range checks of numeric command options, done before any work (one-line errors)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from emseg.errors import ConfigError

T = TypeVar("T")


def require_positive(option: str, values: float | Iterable[float] | None) -> None:
    """Refuse ``--option`` unless every value is > 0 (``None`` means "use the default")."""
    if values is None:
        return
    items = list(values) if isinstance(values, Iterable) else [values]
    if any(v <= 0 for v in items):
        shown = " ".join(f"{v:g}" for v in items)
        raise ConfigError(f"{option} {shown}: must be positive (> 0)")


def first_problem(error: Exception) -> str:
    """The first message of a pydantic ValidationError (else ``str(error)``), on one line."""
    errors = getattr(error, "errors", None)
    if callable(errors) and errors():
        message = str(errors()[0].get("msg", error))
        return message.removeprefix("Value error, ")
    return str(error).splitlines()[0]


def from_options(model: type[T], **options: Any) -> T:
    """``model(**options)`` for command-line options: a pydantic ValidationError becomes a one-line
    `ConfigError` naming the option and its value (``--clip-limit -1: Input should be ...``)."""
    from pydantic import ValidationError

    try:
        return model(**options)
    except ValidationError as err:
        raise ConfigError(validation_line(err, options)) from None


def validation_line(error: Any, options: dict | None = None) -> str:
    """``--field value: problem`` (``options``: the values given) or ``Model: field: problem``."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or "value"
    problem = first_problem(error)
    if options is not None and first.get("loc") and first["loc"][0] in options:
        name = str(first["loc"][0])
        return f"--{name.replace('_', '-')} {options[name]}: {problem}"
    return f"{error.title}: {field}: {problem}"
