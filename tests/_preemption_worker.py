"""A tiny training loop that stops cleanly on SIGTERM, for `test_checkpoint.py`.

Usage: python _preemption_worker.py DIRECTORY [PORT PROCESS_ID NUM_PROCESSES]

Prints ``READY`` once the handler is installed, then ``STEP n`` as it goes; on SIGTERM it
saves the state it reached, waits for the write, prints ``STOPPED n`` and exits 0. It
exits 3 if no signal arrives within a minute, so a lost signal fails instead of hanging.
"""

import sys
import time

from tac_jax import parallel


def main() -> None:
    directory = sys.argv[1]
    if len(sys.argv) > 2:
        port, process_id, num_processes = map(int, sys.argv[2:5])
        parallel.initialize_distributed(f"127.0.0.1:{port}", num_processes, process_id)
    import jax
    import jax.numpy as jnp

    from tac_jax.train import checkpoint

    # Multi-process saves need global arrays, so the state lives on the mesh as in training.
    mesh = parallel.make_mesh()
    make_state = jax.jit(
        lambda s: {"step": s, "w": jnp.full((3,), s, jnp.float32)},
        out_shardings=parallel.replicated(mesh),
    )

    ckpt = checkpoint.Checkpointer(directory, keep=2, every_steps=7)
    installed = checkpoint.install_sigterm_handler()
    print(f"READY {installed}", flush=True)
    deadline = time.monotonic() + 60
    step = 0
    while time.monotonic() < deadline:
        step += 1
        state = make_state(jnp.int32(step))
        stop = checkpoint.preemption_requested(step)
        ckpt.save(step, state, metadata={"stopped": stop}, force=stop)
        if stop:
            ckpt.close()
            print(f"STOPPED {step}", flush=True)
            sys.exit(0)
        print(f"STEP {step}", flush=True)
        time.sleep(0.02)
    ckpt.close()
    sys.exit(3)


if __name__ == "__main__":
    main()
