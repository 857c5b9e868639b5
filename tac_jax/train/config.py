"""The training configuration: every field with its default, and its validation.

The configs of `tac_jax.configs` (and any config file) start from `default_config` and
change what they need, so this file is the one place that lists and documents every field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import ml_collections

MODES = ("base", "addon", "scratch")
METHOD_NAMES = ("none", "confidence", "ensemble", "sngp")
SOURCES = ("fashion_mnist", "tfds", "arrays", "manpages")
TEXT_SOURCES = ("manpages",)
AUGMENTATIONS = ("none", "mnist", "cifar", "flip")
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_config() -> ml_collections.ConfigDict:
    """Every training field with its default (a small MLP on Fashion-MNIST, TAC add-on).

    Fields:
      mode: ``"base"`` (cross-entropy on the base model alone), ``"addon"`` (TAC on a
        frozen base restored from ``base_workdir``) or ``"scratch"`` (base and TAC jointly).
      base_workdir: in add-on mode, the workdir of a finished ``"base"`` run.
      model.name: a `tac_jax.models.MODELS` key; every other ``model.*`` field is passed
        to the model (``features``, ``channels``, ``depth``, ...).
      data.source: ``"fashion_mnist"`` (local IDX files), ``"tfds"``, ``"arrays"`` or
        ``"manpages"`` (Debian's manual pages as text, see `tac_jax.data.manpages`).
      data.name, data.train_split, data.test_split: the TFDS dataset and splits;
        data.tfds_method: ``"data_source"`` (ArrayRecord, no TensorFlow) or ``"load"``
        (``tfds.load``, needs TensorFlow; reads TFRecord-prepared datasets too).
      data.data_dir: where the files are (empty: the source's default).
      data.train_images, data.train_labels, data.test_images, data.test_labels: for
        ``"arrays"``: ``.npy``/``.npz``/IDX files (a labels path may stay empty when
        the images path is an ``.npz`` holding both).
      data.num_classes: the class count (``len(classes)`` when a subset is kept).
      data.classes: keep only these original classes, relabelled 0..k-1 (empty: all).
      data.validation_fraction: share of the training set held out (0: none).
      data.train_examples, data.test_examples: keep the first N (0: all).
      data.augment: on-device training augmentation: ``"none"``, ``"mnist"``
        (resized crop, rotation, noise), ``"cifar"`` (flip and 4-pixel shift),
        ``"flip"``.
      data.text_key, data.label_key: for ``"tfds"``: a non-empty text_key makes it a
        text dataset read by `tac_jax.data.text.load_tfds_text`.
      data.task, data.sections, data.languages, data.max_per_class,
        data.min_per_class, data.test_fraction: for ``"manpages"``: the task
        (``"section"`` or ``"language"``), the sections and languages read (empty: the
        defaults), at most this many pages per class (0: all), the fewest a class may
        have, the share of each class for test.
      data.max_len, data.vocab_size, data.min_count: text sources: tokens per example,
        ids of the word vocabulary built on the training split (saved as
        ``vocab.json`` in the workdir) and the rarest word it keeps.
      method.name: ``"none"``, or a training-time uncertainty method trained in
        ``"base"`` mode (`tac_jax.methods`): ``"confidence"`` (DeVries & Taylor's
        branch; ``method.budget`` β and ``method.lmbda`` λ's start), ``"ensemble"``
        (``method.members`` copies in one step, their forward passes ``jax.vmap``-ed, or
        written out one by one with ``method.member_axis="unroll"``: faster on a CPU)
        or ``"sngp"`` (spectral-norm bound ``method.sn_coeff``, ``method.power_iterations``, ``method.rff_features``
        random features, ``method.lengthscale`` (0: √dim), ``method.ridge``). MC
        dropout needs no method: a base with ``model.dropout_rate > 0`` is sampled at
        evaluation.
      tac.*: the TAC head and loss (see `tac_jax.model.TACModel` and
        `tac_jax.train.objectives.TACLossConfig`); ``tac.layers`` empty taps the
        model's default layers; ``tac.code_width`` 0 picks the default width.
      optim.*, schedule.*: see `tac_jax.train.optim.make_optimizer`.
      label_smoothing: of the base cross-entropy in ``"base"`` mode.
      steps: number of updates; batch_size: the global batch (all processes).
      eval_batch_size: global batch of the final evaluation.
      seed: seeds the initialisation, data order and every random draw of training.
      log_every, ckpt_every, keep: logging and checkpoint intervals (in steps), and
        how many checkpoints to keep.
      eval_every: validation accuracy (and TAC's) every this many steps, written to
        ``metrics.jsonl`` as the learning curve (0: only the final evaluation).
      dtype: compute dtype, ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
      mesh.data, mesh.model: the device mesh (-1: every device left).
      progress: show a progress bar (process 0, and only on a terminal).

    Returns:
      An unlocked `ml_collections.ConfigDict`.

    >>> default_config().mode
    'addon'
    """
    config = ml_collections.ConfigDict()
    config.mode = "addon"
    config.base_workdir = ""

    config.model = ml_collections.ConfigDict()
    config.model.name = "mlp"
    config.model.features = (64, 64)

    config.data = ml_collections.ConfigDict()
    config.data.source = "fashion_mnist"
    config.data.name = ""
    config.data.data_dir = ""
    config.data.train_split = "train"
    config.data.test_split = "test"
    config.data.tfds_method = "data_source"
    config.data.train_images = ""
    config.data.train_labels = ""
    config.data.test_images = ""
    config.data.test_labels = ""
    config.data.num_classes = 10
    config.data.classes = ()
    config.data.validation_fraction = 0.0
    config.data.train_examples = 0
    config.data.test_examples = 0
    config.data.augment = "none"
    config.data.text_key = ""
    config.data.label_key = "label"
    config.data.task = "section"
    config.data.sections = ()
    config.data.languages = ()
    config.data.max_per_class = 0
    config.data.min_per_class = 100
    config.data.test_fraction = 0.2
    config.data.max_len = 256
    config.data.vocab_size = 8192
    config.data.min_count = 2

    config.method = ml_collections.ConfigDict()
    config.method.name = "none"
    config.method.members = 5
    config.method.member_axis = "vmap"
    config.method.budget = 0.3
    config.method.lmbda = 0.1
    config.method.sn_coeff = 0.95
    config.method.power_iterations = 1
    config.method.rff_features = 1024
    config.method.lengthscale = 0.0
    config.method.ridge = 1.0

    config.tac = ml_collections.ConfigDict()
    config.tac.layers = ()
    config.tac.code_kind = "auto"
    config.tac.code_width = 0
    config.tac.code_cap = 16
    config.tac.code_seed = 0
    config.tac.projection = "small"
    config.tac.layer_norm = False
    config.tac.bottleneck = 1.0
    config.tac.slicing = "uniform"
    config.tac.reduction = "mean"
    config.tac.scale = 10.0
    # The authors declare the scale a parameter but never optimise it.
    config.tac.learn_scale = False
    config.tac.ce_weight = 1.0
    config.tac.l1_weight = 10.0
    config.tac.head_weight = 1.0
    config.tac.code_noise = 0.15
    config.tac.mixup_alpha = 0.0
    # TAC's predictions and scores at evaluation read the deepest this many tapped
    # layers (0: all); `evaluate --deepest` and `score --deepest` override it.
    config.tac.score_deepest = 0
    # tac_fused = z(tac_weighted) + fuse_weight · z(tac_mahalanobis); 0.25 is what the
    # TAC study chose on validation data (experiments/tac_study).
    config.tac.fuse_weight = 0.25
    # Adversarial training (METHODS §1): PGD replaces the first half of each batch.
    config.tac.adversarial_epsilon = 0.0
    config.tac.adversarial_steps = 10
    config.tac.adversarial_target = "base"

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"
    config.optim.learning_rate = 0.1
    config.optim.momentum = 0.9
    config.optim.nesterov = False
    config.optim.weight_decay = 5e-5
    config.optim.clip_norm = 1.0
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.eps = 1e-8

    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = "constant"
    config.schedule.warmup_steps = 0
    config.schedule.decay_at = ()
    config.schedule.decay_factor = 0.1
    config.schedule.end_factor = 0.0

    config.label_smoothing = 0.0
    config.steps = 100
    config.batch_size = 128
    config.eval_batch_size = 500
    config.seed = 0
    config.log_every = 10
    config.ckpt_every = 100
    # Validation accuracy every this many steps (0: only at the end): the learning curve.
    config.eval_every = 0
    config.keep = 3
    config.dtype = "float32"

    config.mesh = ml_collections.ConfigDict()
    config.mesh.data = -1
    config.mesh.model = 1

    config.progress = True
    return config


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"expected config.{name} in {choices}, got {value!r}")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks the fields that would otherwise fail late (after data loading or compiling).

    Every float anywhere in the config must be finite; the optimizer's and schedule's
    numbers must also lie in their ranges (a positive learning rate, ...).

    Raises:
      ValueError: naming the field, what was expected and what was given.
    """
    _check_optimizer(config)
    _check_choice("mode", config.mode, MODES)
    _check_choice("data.source", config.data.source, SOURCES)
    method = config.get("method", {}).get("name", "none")
    _check_choice("method.name", method, METHOD_NAMES)
    if method != "none" and config.mode != "base":
        raise ValueError(
            f"expected config.mode 'base' for config.method.name {method!r} (a method trains "
            f"its own network), got mode {config.mode!r}"
        )
    _check_choice("data.augment", config.data.augment, AUGMENTATIONS)
    _check_choice("dtype", config.dtype, tuple(COMPUTE_DTYPES))
    for name in ("steps", "batch_size", "eval_batch_size", "log_every", "ckpt_every", "keep"):
        if int(config[name]) < 1:
            raise ValueError(f"expected config.{name} >= 1, got {config[name]}")
    tac = config.get("tac", {})
    if int(tac.get("score_deepest", 0)) < 0:
        raise ValueError(f"expected config.tac.score_deepest >= 0, got {tac.score_deepest}")
    fuse = float(tac.get("fuse_weight", 0.25))
    if not math.isfinite(fuse) or fuse < 0:
        raise ValueError(f"expected a finite config.tac.fuse_weight >= 0, got {fuse}")
    if int(config.get("eval_every", 0)) < 0:
        raise ValueError(f"expected config.eval_every >= 0, got {config.eval_every}")
    if config.seed < 0:
        raise ValueError(f"expected a non-negative config.seed, got {config.seed}")
    if config.mode == "addon" and not config.base_workdir:
        raise ValueError(
            "expected config.base_workdir (the workdir of a finished 'base' run) for mode "
            "'addon', got ''"
        )
    classes = tuple(config.data.classes)
    if classes and len(classes) != config.data.num_classes:
        raise ValueError(
            f"expected config.data.num_classes == len(config.data.classes) = {len(classes)}, "
            f"got {config.data.num_classes}"
        )
    if config.data.num_classes < 2:
        raise ValueError(f"expected config.data.num_classes >= 2, got {config.data.num_classes}")
    if is_text_data(config.data):
        _validate_text(config)
    # Last: the checks above say more about the fields they know.
    _check_finite(config, "config")


def _check_finite(node: Any, where: str) -> None:
    """Every float of ``node`` (a section, a tuple or a leaf) is finite."""
    if isinstance(node, ml_collections.ConfigDict | Mapping):
        for key, value in node.items():
            _check_finite(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _check_finite(value, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ValueError(f"expected a finite number for {where}, got {node}")


# (low, high, low inclusive, high inclusive) of the optimizer's and schedule's numbers.
_RANGES = {
    "optim.learning_rate": (0.0, math.inf, False, False),
    "optim.weight_decay": (0.0, math.inf, True, False),
    "optim.clip_norm": (0.0, math.inf, True, False),
    "optim.momentum": (0.0, 1.0, True, False),
    "optim.b1": (0.0, 1.0, True, False),
    "optim.b2": (0.0, 1.0, True, False),
    "optim.eps": (0.0, math.inf, True, False),
    "schedule.warmup_steps": (0.0, math.inf, True, False),
    "schedule.decay_factor": (0.0, math.inf, True, False),
    "schedule.end_factor": (0.0, math.inf, True, False),
    "label_smoothing": (0.0, 1.0, True, False),
}


def _check_optimizer(config: ml_collections.ConfigDict) -> None:
    for key, (low, high, low_in, high_in) in _RANGES.items():
        section, _, name = key.rpartition(".")
        node = config.get(section) if section else config
        value = None if node is None else node.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number for config.{key}, got {value!r}")
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below):
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise ValueError(f"expected config.{key} in {interval}, got {value}")
    for i, point in enumerate(config.get("schedule", {}).get("decay_at", ()) or ()):
        if isinstance(point, bool) or not isinstance(point, int | float) or not point > 0:
            raise ValueError(f"expected config.schedule.decay_at[{i}] > 0, got {point!r}")


def is_text_data(data: ml_collections.ConfigDict) -> bool:
    """Whether ``config.data`` names a text source (integer token inputs).

    >>> is_text_data(default_config().data)
    False
    """
    return data.source in TEXT_SOURCES or (data.source == "tfds" and bool(data.get("text_key")))


def _validate_text(config: ml_collections.ConfigDict) -> None:
    data = config.data
    if data.augment != "none":
        raise ValueError(f"expected config.data.augment 'none' for text data, got {data.augment!r}")
    if config.tac.mixup_alpha > 0:
        # Mixing integer token ids gives no sequence at all.
        raise ValueError(
            f"expected config.tac.mixup_alpha 0 for text data, got {config.tac.mixup_alpha}"
        )
    if tuple(data.classes):
        raise ValueError(
            f"expected no config.data.classes for text data, got {tuple(data.classes)}"
        )
    for name in ("max_len", "vocab_size"):
        limit = config.model.get(name)
        if limit is not None and int(data.get(name, 0)) > int(limit):
            raise ValueError(
                f"expected config.data.{name} <= config.model.{name}={limit}, got {data.get(name)}"
            )


def _freeze(value: Any) -> Any:
    if isinstance(value, ml_collections.ConfigDict):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def config_from_dict(values: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """Rebuilds a config saved as JSON (``config.json`` or checkpoint metadata).

    JSON turns tuples into lists; they become tuples again, so module fields stay hashable.

    >>> config_from_dict({"model": {"features": [8, 8]}}).model.features
    (8, 8)
    """
    return ml_collections.ConfigDict(_freeze(dict(values)))


def model_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The ``model.*`` fields passed to `tac_jax.models.create_model` (all but ``name``)."""
    return {k: _freeze(v) for k, v in config.model.items() if k != "name"}
