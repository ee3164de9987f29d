"""Coerce operator arguments that may arrive as rendered Jinja text into the values they stand for.

A DAG without ``render_template_as_native_obj`` renders ``{{ params.plan_only }}`` as ``"True"`` and a list
param as ``"['a', 'b']"``; the operators accept both the native values and those renderings, and reject
anything else with the argument's name instead of guessing.
"""

from __future__ import annotations

import ast
from typing import Any

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", "", "none"}


def as_bool(value: Any, name: str) -> bool:
    """A boolean from ``True``/``False`` or their renderings (``"True"``, ``"false"``, ``"1"``, ``""`` …).

    :param value: the argument's value after templating.
    :param name: the argument's name, for the error message.
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be a boolean, got {value!r}")


def as_float(value: Any, name: str) -> float | None:
    """A number, or ``None`` for ``None``/blank text.

    :param value: the argument's value after templating.
    :param name: the argument's name, for the error message.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def as_name_list(value: Any, name: str) -> list[str]:
    """Names from a list, a comma-separated string or a rendered list literal; ``None``/``""``/``[]`` → ``[]``.

    :param value: the argument's value after templating.
    :param name: the argument's name, for the error message.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [part.strip() for part in text.split(",") if part.strip()]
        try:
            value = ast.literal_eval(text)  # a literal only: never evaluates code
        except (ValueError, SyntaxError):
            raise ValueError(f"{name} must be a list of names, got {text!r}") from None
    if not isinstance(value, list | tuple | set):
        raise ValueError(f"{name} must be a list of names, got {value!r}")
    return [str(v).strip() for v in value if str(v).strip()]
