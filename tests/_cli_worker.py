"""``tac-jax`` (`tac_jax.cli.main`), with a training hook that prints ``STEP n`` after
every step and then sleeps, so a test can signal the command mid-run.

Usage: python _cli_worker.py SLEEP_SECONDS TAC_JAX_ARGUMENTS...

With ``HOLD_AT=n`` in the environment the hook stops at step ``n`` for good (until the
test kills the process), so the test can wait for earlier saves to land first.

Exits with the command's own exit code.
"""

import os
import sys
import time


def main() -> int:
    sleep = float(sys.argv[1])
    from tac_jax import cli
    from tac_jax.train import loop

    train = loop.train_and_evaluate

    hold = int(os.environ.get("HOLD_AT", "0"))

    def hook(step, state, metrics):
        print(f"STEP {step}", flush=True)
        time.sleep(3600 if step == hold else sleep)

    def slowed(config, workdir, **kwargs):
        return train(config, workdir, hooks=[hook], **kwargs)

    # cmd_train imports train_and_evaluate when it runs, so it finds this one.
    loop.train_and_evaluate = slowed
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
