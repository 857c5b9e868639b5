"""Times the authors' PyTorch TAC (ServiceNow/tac, MIT; their MNIST config) on this machine.

Never imported by tac_jax: `side_by_side.py` runs it with a Python that has PyTorch, and
sets its JSON lines beside `tac-jax bench`'s. It needs the authors' ``src/`` and
``exp_configs.py`` in the folder named by ``--ref-dir`` (see the README for getting them)
and a CPU PyTorch with what their code imports; on Debian, as root:

    apt-get install -y python3-torch python3-scipy python3-sklearn python3-tqdm python3-pandas
    /usr/bin/python3 experiments/bench/reference_cpu.py --ref-dir .ref

Prints one JSON line per program (``what`` in addon, scratch, score, forward; images per
second from the median of ``--repeats`` timed calls after ``--warmup``), on synthetic
inputs of the real shapes, as `tac-jax bench` times its own.
"""

import argparse
import copy
import json
import os
import sys
import time
import types


def median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-dir", required=True, help="folder with the authors' src/")
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--score-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.ref_dir, "exp_configs.py")):
        print(f"reference_cpu: no exp_configs.py in {args.ref_dir!r}", file=sys.stderr)
        return 2
    import torch

    # Their package imports foolbox for attacks that are not timed here.
    sys.modules.setdefault("foolbox", types.ModuleType("foolbox"))
    sys.path.insert(0, os.path.abspath(args.ref_dir))
    import src.constants

    src.constants.DEVICE = "cpu"  # their code assumes CUDA
    import exp_configs
    from src import models

    def build(**over):
        config = copy.deepcopy(exp_configs.BASE_CONFIGS["mnist"])
        config["pretrained_path"] = None
        config.update(over)
        return models.get_model(config)

    torch.set_num_threads(args.threads)
    common = {"ref": "ServiceNow/tac mnist", "torch": torch.__version__, "threads": args.threads}
    tb, sb = args.train_batch, args.score_batch
    x, y = torch.rand((tb, 1, 28, 28)), torch.randint(0, 10, (tb,))
    for what, over in (("addon", {}), ("scratch", {"train_base_model": True})):
        model = build(train_batch_size=tb, **over)
        model(x[:2])
        dt = median_seconds(lambda m=model: m.train_on_batch((x, y), 0), args.repeats, args.warmup)
        print(
            json.dumps({**common, "what": what, "batch": tb, "images_per_s": tb / dt}), flush=True
        )
    model = build()
    model.eval()
    images = torch.rand((sb, 1, 28, 28))
    with torch.no_grad():
        model(images[:2])
        dt_score = median_seconds(lambda: model(images), args.repeats, args.warmup)
        dt_forward = median_seconds(
            lambda: model.base_model.get_sets_of_features(images), args.repeats, args.warmup
        )
    for what, dt in (("score", dt_score), ("forward", dt_forward)):
        print(
            json.dumps({**common, "what": what, "batch": sb, "images_per_s": sb / dt}), flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
