"""Packages that are also functions: ``tac_jax.train(config, workdir)``.

A package named like a function of its parent (`tac_jax.train`, `tac_jax.evaluate`)
would replace that function as soon as any of its modules is imported, since importing
``tac_jax.train.loop`` sets the attribute ``tac_jax.train`` to the package. So the
package itself is made callable: its class becomes `CallableModule`, whose call is one
of the package's functions, looked up at each call.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any


class CallableModule(types.ModuleType):
    """A module whose call is its function named ``__call_target__``."""

    __call_target__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__call_target__)(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(getattr(self, self.__call_target__))


def make_callable(module_name: str, target: str) -> None:
    """Makes the module ``module_name`` callable as its function ``target``.

    Args:
      module_name: an imported module's name (``__name__`` in the module itself).
      target: the name of the module's function a call goes to.

    Raises:
      ValueError: if the module has no function of that name.
    """
    module = sys.modules[module_name]
    if not callable(getattr(module, target, None)):
        raise ValueError(f"expected a function {target} in {module_name}, got none")
    module.__call_target__ = target
    module.__class__ = CallableModule
