"""Configs by name or file, and command-line overrides.

A config is a Python module with ``get_config()`` returning an
``ml_collections.ConfigDict``: one that ships with tac_jax is named (``smoke``, the
modules of `tac_jax.configs`), any other is a file (``path/to/config.py``). ``SPEC:ARG``
calls ``get_config("ARG")`` (e.g. a variant name). Overrides ``key.sub=value`` take the
type of the field they replace.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import pkgutil
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import ml_collections

CONFIG_PACKAGE = "tac_jax.configs"

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def config_names() -> tuple[str, ...]:
    """The names of the configs that ship with tac_jax, sorted.

    >>> "smoke" in config_names() and "demo" in config_names()
    True
    """
    package = importlib.import_module(CONFIG_PACKAGE)
    return tuple(
        sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.ispkg)
    )


def _split(spec: str) -> tuple[str, str | None]:
    """``"x:ARG"`` → ``("x", "ARG")``, unless ``spec`` itself is a file (its name has a colon)."""
    if os.path.isfile(spec) or ":" not in spec:
        return spec, None
    head, arg = spec.rsplit(":", 1)
    return head, arg


def _config_module(source: str) -> ModuleType:
    """The module of a config file when ``source`` is one, else of the config so named."""
    if os.path.isfile(source):
        # An explicit loader: a config file need not end in ``.py``.
        loader = importlib.machinery.SourceFileLoader("_tac_jax_config", source)
        module_spec = importlib.util.spec_from_loader(loader.name, loader)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    if not source.isidentifier():
        raise FileNotFoundError(f"expected a config file at {source}, got no such file")
    names = config_names()
    if source not in names:
        raise ValueError(
            f"expected a config name among [{', '.join(names)}] or a config file, got {source!r}"
        )
    return importlib.import_module(f"{CONFIG_PACKAGE}.{source}")


def load_config(spec: str | os.PathLike) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a config named in `tac_jax.configs` or from a file.

    A file that exists wins over a config of the same name.

    Args:
      spec: a name (``smoke``, ``demo:base``) or a path (``path/to/config.py`` or
        ``path/to/config.py:ARG``); ``:ARG`` is passed to ``get_config``.

    Returns:
      The config.

    Raises:
      FileNotFoundError: if a path names no file.
      ValueError: if a name is not one of `config_names`, the module defines no
        ``get_config``, ``ARG`` is given to one that takes none, or it returns no
        ConfigDict.

    >>> load_config("smoke").model.name, load_config("demo:base").mode
    ('mlp', 'base')
    """
    source, arg = _split(os.fspath(spec))
    module = _config_module(source)
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ValueError(f"expected a get_config() function in {source}, got none")
    if arg is not None and not inspect.signature(get_config).parameters:
        raise ValueError(
            f"expected {source} without an argument (its get_config() takes none), got {arg!r}"
        )
    config = get_config() if arg is None else get_config(arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(
            f"expected get_config() in {source} to return a ConfigDict, got {type(config).__name__}"
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
