"""Config files and command-line overrides.

A config file is a Python file with ``get_config()`` returning an
``ml_collections.ConfigDict``. ``FILE:ARG`` calls ``get_config("ARG")`` (e.g. a
variant name). Overrides ``key.sub=value`` take the type of the field they replace.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Iterable
from typing import Any

import ml_collections

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def load_config(spec: str | os.PathLike) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a Python config file.

    Args:
      spec: ``path/to/config.py`` or ``path/to/config.py:ARG``.

    Returns:
      The file's config.

    Raises:
      FileNotFoundError: if the file does not exist.
      ValueError: if it defines no ``get_config`` or returns no ConfigDict.
    """
    spec = os.fspath(spec)
    path, arg = spec, None
    if not os.path.exists(path) and ":" in spec:
        path, arg = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"expected a config file at {path}, got no such file")
    module_spec = importlib.util.spec_from_file_location("_tac_jax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ValueError(f"expected a get_config() function in {path}, got none")
    config = get_config() if arg is None else get_config(arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(
            f"expected get_config() in {path} to return a ConfigDict, got {type(config).__name__}"
        )
    return config


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _sequence(text: str) -> tuple[Any, ...]:
    value = _literal(text.strip())
    if isinstance(value, str):
        # "a,b" or "conv1,conv2": a bare comma-separated list.
        stripped = value.strip("()[] ")
        if not stripped:
            return ()
        return tuple(_literal(part.strip()) for part in stripped.split(","))
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def parse_value(text: str, current: Any, key: str = "value") -> Any:
    """Parses ``text`` as the type of ``current`` (the field's present value).

    >>> parse_value("3", 1), parse_value("0.5", 1.0), parse_value("no", True)
    (3, 0.5, False)
    >>> parse_value("(16,32)", (1,)), parse_value("conv1,conv2", ())
    ((16, 32), ('conv1', 'conv2'))
    """
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected a boolean for config.{key} (true/false), got {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer for config.{key}, got {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number for config.{key}, got {text!r}") from None
    if isinstance(current, str):
        return text
    if isinstance(current, list | tuple):
        return _sequence(text)
    if current is None:
        return _literal(text)
    raise ValueError(
        f"expected config.{key} to be a scalar, string or tuple field to override, "
        f"got a {type(current).__name__}"
    )


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets ``config.<key>`` (dotted) from ``text``, typed like the field it replaces.

    Raises:
      ValueError: if the key does not exist or the text does not parse as its type.
    """
    *parents, name = key.split(".")
    node = config
    for i, part in enumerate(parents):
        child = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
        if not isinstance(child, ml_collections.ConfigDict):
            where = ".".join(parents[: i + 1])
            raise ValueError(f"expected a config section at config.{where}, got none (in {key!r})")
        node = child
    if name not in node:
        known = ", ".join(sorted(node.keys()))
        raise ValueError(f"expected a config key among [{known}], got {key!r}")
    current = node[name]
    if isinstance(current, ml_collections.ConfigDict):
        raise ValueError(f"expected a leaf field, got the section config.{key}")
    value = parse_value(text, current, key)
    with node.unlocked():
        # Assigning through __setitem__ with the parsed type keeps ConfigDict's type checks.
        node[name] = value


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Iterable[tuple[str, str]]
) -> ml_collections.ConfigDict:
    """Applies ``(key, text)`` pairs in order; returns ``config`` (changed in place)."""
    for key, text in overrides:
        apply_override(config, key, text)
    return config


def split_override_args(args: Iterable[str], prefix: str = "--config.") -> list[tuple[str, str]]:
    """``["--config.a=1", "--config.b", "2"]`` → ``[("a", "1"), ("b", "2")]``.

    Raises:
      ValueError: on an argument that is not an override, or one without a value.

    >>> split_override_args(["--config.steps=5", "--config.seed", "3"])
    [('steps', '5'), ('seed', '3')]
    """
    args = list(args)
    out = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith(prefix):
            raise ValueError(f"expected an override of the form {prefix}KEY=VALUE, got {arg!r}")
        body = arg[len(prefix) :]
        if "=" in body:
            key, text = body.split("=", 1)
        elif i + 1 < len(args):
            key, text = body, args[i + 1]
            i += 1
        else:
            raise ValueError(f"expected a value for {arg}, got none")
        if not key:
            raise ValueError(f"expected a key after {prefix}, got {arg!r}")
        out.append((key, text))
        i += 1
    return out
