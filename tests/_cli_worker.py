"""``tac-jax`` (`tac_jax.cli.main`), with a training hook that prints ``STEP n`` after
every step and then sleeps, so a test can signal the command mid-run.

Usage: python _cli_worker.py SLEEP_SECONDS TAC_JAX_ARGUMENTS...

Exits with the command's own exit code.
"""

import sys
import time


def main() -> int:
    sleep = float(sys.argv[1])
    from tac_jax import cli
    from tac_jax.train import loop

    train = loop.train_and_evaluate

    def hook(step, state, metrics):
        print(f"STEP {step}", flush=True)
        time.sleep(sleep)

    def slowed(config, workdir, **kwargs):
        return train(config, workdir, hooks=[hook], **kwargs)

    # cmd_train imports train_and_evaluate when it runs, so it finds this one.
    loop.train_and_evaluate = slowed
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
