"""Session set-up shared by every test module.

XLA compiles each test's small programs with LLVM's optimisation off: compiling, not
running, dominates these tests (a third of the suite's time on the 2-core CI machine),
and the tests check what a program computes, never how fast. An ``XLA_FLAGS`` that
already sets an optimisation level is left as it is.
"""

import os

_LEVEL = "--xla_backend_optimization_level"
if _LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_LEVEL}=0".strip()
