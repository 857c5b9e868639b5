"""One training process for the subprocess tests of `tac_jax.train`.

Usage: python _train_worker.py WORKDIR OUT [--port P --process-id I --num-processes N]
       [--sleep SECONDS] [--config.KEY=VALUE ...]

Trains the smoke config (with the overrides) through `train_and_evaluate` and writes the
final training state, flattened, to ``OUT.<process index>.npz``. Prints ``START n`` at
its first step, ``STEP n`` after each one (sleeping ``--sleep`` seconds, so a test can
kill it mid-run) and ``RESULT {json}`` at the end.
"""

import argparse
import json
import sys
import time

SMOKE = "smoke"  # tac_jax/configs/smoke.py


def flatten(tree) -> dict:
    import jax
    import numpy as np

    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x.addressable_data(0)) for p, x in leaves}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("out")
    parser.add_argument("--port", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--sleep", type=float, default=0.0)
    args, extra = parser.parse_known_args()

    from tac_jax import parallel
    from tac_jax.config_io import apply_overrides, load_config, split_override_args

    if args.port:
        parallel.initialize_distributed(
            f"127.0.0.1:{args.port}", args.num_processes, args.process_id
        )
    import numpy as np

    from tac_jax.train.loop import train_and_evaluate

    config = apply_overrides(load_config(SMOKE), split_override_args(extra))
    config.progress = False
    index = parallel.process_info().process_index
    first = []

    def hook(step, state, metrics):
        if not first:
            first.append(step)
            print(f"START {step}", flush=True)
        print(f"STEP {step}", flush=True)
        if args.sleep:
            time.sleep(args.sleep)
        if step == config.steps:
            np.savez(f"{args.out}.{index}.npz", **flatten(state))

    results = train_and_evaluate(config, args.workdir, hooks=[hook])
    print("RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    sys.exit(main())
