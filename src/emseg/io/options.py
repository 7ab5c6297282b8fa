"""Range checks of numeric command options, done before any work (one-line errors)."""

from __future__ import annotations

from collections.abc import Iterable

from emseg.errors import ConfigError


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
