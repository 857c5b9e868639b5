"""`Detector`: every confidence score of one classifier, fitted on in-distribution arrays.

The object behind ``tac-jax score`` and ``tac-jax evaluate`` (`Detector.from_run`, a
trained run's directory), and the way to use the scores on a model of one's own
(`Detector.from_module`: any flax module and its variables; an NNX model through
``flax.nnx.bridge.to_linen``). A detector collects one forward pass per array
(`tac_jax.evaluate.engine.collect`), fits the statistics its scores read
(`fit`: training arrays, and a validation split for the scores fitted on held-out data),
and scores arrays (`score`); `fit` can first train a TAC add-on on the frozen model.
`Detector.calibrate` thresholds a score at a guaranteed selective risk on validation
data, and `Detector.acceptance` applies it (``tac-jax score --risk``).

>>> det = Detector.from_module(model, variables, x_train[:1])  # doctest: +SKIP
>>> det.fit(x_train, y_train, tac_steps=2000)  # doctest: +SKIP
>>> det.score(x_test)["tac"].shape  # doctest: +SKIP
(10000,)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from tac_jax.evaluate.engine.collect import (
    DEFAULT_BATCH,
    check_batchable,
    collect,
    head_params,
    make_forward,
)
from tac_jax.evaluate.engine.fitted import MAX_FIT, Fitted, fit_statistics, subset_indices
from tac_jax.evaluate.engine.registry import (
    SCORES,
    needs_fit,
    resolve_scores,
    run_capabilities,
    score_passes,
    with_uses,
)
from tac_jax.evaluate.engine.scoring import (
    check_inputs,
    compute_scores,
    drop_unfitted,
    fit_validation,
    fitted_for_run,
    tac_options,
)
from tac_jax.metrics.guarantee import ThresholdResult, accept, calibrate, check_guarantee

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Weights:
    """A model's variables, in the form the engine reads (``variables``, ``params``)."""

    variables: Mapping[str, Any]

    @property
    def params(self) -> Any:
        return self.variables["params"]


class Detector:
    """The scores of one classifier: fit on in-distribution arrays, score any arrays.

    Attributes:
      setup: the model's `tac_jax.train.setup.TrainSetup`.
      state: its variables (``.variables``, ``.params``).
      names: the scores it computes, in report order.
      fitted: the fitted statistics (None before `fit` when a score needs them).
      forward: the jitted passes (`tac_jax.evaluate.engine.collect.Forward`).
      step: the checkpoint step (runs), or None.
      splits: the run's data splits (`from_run` with fitted scores), or None.
    """

    def __init__(
        self,
        setup: Any,
        state: Any,
        *,
        scores: Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
        deepest: int | None = None,
        fuse_weight: float | None = None,
        batch_size: int = DEFAULT_BATCH,
        step: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"expected a positive batch size, got {batch_size}")
        self.setup, self.state, self.step = setup, state, step
        self.requested = None if scores is None else tuple(scores)
        self.batch_size = int(batch_size)
        self.forward = make_forward(setup, state, layers=layers)
        self.head = head_params(setup, state)
        self.names = resolve_scores(self.requested, run_capabilities(setup, state))
        self.options = tac_options(setup, state, deepest, fuse_weight)
        self.fitted: Fitted | None = None
        self.splits: dict[str, Any] | None = None
        self.run: Any = None
        self.vocab: Any = None

    # -- Building ---------------------------------------------------------------------

    @classmethod
    def from_run(
        cls,
        workdir: str | os.PathLike,
        *,
        step: int | None = None,
        scores: Sequence[str] | None = None,
        deepest: int | None = None,
        fuse_weight: float | None = None,
        batch_size: int = DEFAULT_BATCH,
        max_fit: int = MAX_FIT,
        seed: int = 0,
        fit: bool = True,
        log: Log | None = None,
    ) -> Detector:
        """A trained run's detector, its statistics fitted on the run's own training
        (and validation) split, or reloaded from ``WORKDIR/report/fitted.npz``.

        Args:
          workdir: the run's directory.
          step: the checkpoint (default: the newest).
          scores: the scores (default: every one the run supports).
          deepest: TAC's scores on the deepest this many tapped layers (default: the
            run's ``config.tac.score_deepest``).
          fuse_weight: ``tac_fused``'s λ (default: the run's ``config.tac.fuse_weight``).
          batch_size: examples per forward pass.
          max_fit: training examples the statistics are fitted on, at most.
          seed: picks them.
          fit: fit (or reload) the statistics now; else call `fit_run` before scoring.
          log: optional progress callback.
        """
        from tac_jax.run import RunDir

        run = RunDir(workdir)
        if log:
            log(f"loading the run in {run.path}")
        setup, step, state = run.load(step)
        det = cls(
            setup,
            state,
            scores=scores,
            deepest=deepest,
            fuse_weight=fuse_weight,
            batch_size=batch_size,
            step=step,
        )
        det.run, det.vocab = run, run.vocab()
        det.splits = run.splits(setup.config)
        if fit:
            det.fit_run(max_fit=max_fit, seed=seed, log=log)
        return det

    def fit_run(self, *, max_fit: int = MAX_FIT, seed: int = 0, log: Log | None = None) -> Detector:
        """Fits (or reloads from the run's cache) the statistics of a detector from
        `from_run` on the run's training and validation splits."""
        if self.run is None:
            raise ValueError("expected a detector from from_run, got one without a run")
        if needs_fit(self.names):
            self.fitted = fitted_for_run(
                self.run.path,
                self.forward,
                self.step,
                self.splits["train"],
                self.head,
                names=self.names,
                max_fit=max_fit,
                seed=seed,
                batch_size=self.batch_size,
                validation=self.splits.get("validation"),
                log=log,
            )
            self.names = drop_unfitted(self.names, self.requested, self.fitted)
        return self

    @classmethod
    def from_module(
        cls,
        module: Any,
        variables: Mapping[str, Any],
        example: Any,
        *,
        layers: Sequence[str] | None = None,
        head: str | None = None,
        activation: Callable[[jax.Array], jax.Array] | None = jax.nn.relu,
        scores: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> Detector:
        """The detector of any flax classifier ``x → (B, C)`` logits.

        Args:
          module: a ``flax.linen`` module (``__call__`` with or without ``train``); an NNX
            model through ``flax.nnx.bridge.to_linen``.
          variables: its variables (``module.init(...)`` or trained).
          example: a batch of inputs (uint8 images, or floats in [0, 1]); its shape and
            dtype are the detector's.
          layers: submodules whose outputs TAC taps and multi-layer Mahalanobis reads,
            by path ("Conv_0", "Block_1.Conv_0"); default: every Conv and Dense but the
            head.
          head: the head Dense's path (default: the last Dense called); its input is the
            penultimate feature the feature-based scores read.
          activation: applied to the tapped outputs (a Conv returns pre-activations).
          scores: the scores (default: every one the model supports).
          batch_size: examples per forward pass.

        Raises:
          ValueError: if the module has no Dense head, or a layer is not among its
            submodules.
        """
        example = check_inputs(example)
        detector = cls.__new__(cls)
        detector._module = {
            "module": module,
            "variables": dict(variables),
            "example": example[:1],
            "layers": None if layers is None else tuple(layers),
            "head": head,
            "activation": activation,
        }
        setup, state = _module_setup(detector._module, tac_steps=0, validation=False)
        # TAC's scores and those fitted on validation data come with `fit`.
        later = ("tac", "validation")
        now = [
            n for n in scores or () if n not in SCORES or not set(later) & set(SCORES[n].needs)
        ] or None
        Detector.__init__(
            detector, setup, state, scores=now, layers=setup.base.layers, batch_size=batch_size
        )
        detector._module["scores"] = scores
        return detector

    # -- Fitting and scoring ----------------------------------------------------------

    def fit(
        self,
        images: Any,
        labels: Any,
        *,
        validation: tuple[Any, Any] | None = None,
        tac_steps: int = 0,
        max_fit: int = MAX_FIT,
        seed: int = 0,
        log: Log | None = None,
    ) -> Detector:
        """Fits the statistics of the fitted scores on in-distribution arrays.

        Args:
          images: training inputs.
          labels: their integer labels.
          validation: ``(images, labels)`` held out from training: TAC's layer weights
            and fusion are fitted there (without it, those scores are left out).
          tac_steps: a model from `from_module`: first train a TAC add-on on the frozen
            model for this many steps on ``(images, labels)`` (the demo's add-on
            recipe); TAC's scores join the detector's. Each call starts again from the
            model as given: a later ``fit`` without ``tac_steps`` has no TAC.
          max_fit: training examples the statistics are fitted on, at most.
          seed: picks them, and seeds TAC's training.
          log: optional progress callback.

        Returns:
          The detector itself.
        """
        images = self._inputs(images)
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"expected ({len(images)},) integer labels, got shape {labels.shape} and "
                f"dtype {labels.dtype}"
            )
        module = getattr(self, "_module", None)
        if tac_steps and module is None:
            raise ValueError("expected a detector from from_module for tac_steps, got a run's")
        if module is not None:
            setup, state = _module_setup(
                module, tac_steps=tac_steps, validation=validation is not None
            )
            if tac_steps:
                from tac_jax.train.in_memory import train_addon

                base = {"params": state.params, **dict(state.variables)}
                trained = train_addon(setup, base, images, labels, seed=seed, log=log)
                state = Weights(trained.variables)
            layers = setup.tac.layers if setup.tac is not None else setup.base.layers
            Detector.__init__(
                self, setup, state, scores=module["scores"], layers=layers,
                batch_size=self.batch_size,
            )  # fmt: skip
        index = subset_indices(len(labels), max_fit, seed)
        train_names = [n for n in with_uses(self.names) if SCORES[n].fit is not None]
        if log:
            log(f"fitting statistics on {len(index)} of {len(labels)} examples")
        outputs = collect(
            self.forward, images[index], batch_size=self.batch_size,
            passes=score_passes(train_names),
        )  # fmt: skip
        num_classes = int(self.setup.config.data.num_classes)
        fitted = fit_statistics(outputs, labels[index], num_classes, self.head, names=self.names)
        if validation is not None:
            held_images, held_labels = validation
            held_images = self._inputs(held_images)
            held = collect(self.forward, held_images, batch_size=self.batch_size)
            codes = self.setup.tac.codes if self.setup.tac is not None else None
            fit_validation(fitted, self.names, held, np.asarray(held_labels), codes,
                           self.batch_size, log)  # fmt: skip
        self.fitted = fitted
        self.names = drop_unfitted(self.names, self.requested, fitted)
        return self

    def _inputs(self, images: Any) -> np.ndarray:
        dtype = np.dtype(self.setup.input_dtype)
        if dtype == np.uint8 or np.issubdtype(dtype, np.floating):
            images = check_inputs(images)  # images: uint8, or floats in [0, 1]
        return check_batchable(images, self.setup.input_shape)

    def outputs(self, images: Any) -> dict[str, Any]:
        """One forward pass (and the extra passes the scores read) over ``images``."""
        images = self._inputs(images)
        return collect(
            self.forward, images, batch_size=self.batch_size, passes=score_passes(self.names)
        )

    def score_outputs(self, outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every score of collected ``outputs`` (see `outputs`)."""
        if needs_fit(self.names) and self.fitted is None:
            fitted = [n for n in self.names if SCORES[n].fitted]
            raise ValueError(f"expected fit(...) before scoring {fitted}, got an unfitted detector")
        return compute_scores(outputs, self.names, fitted=self.fitted, **self.options)

    def score(self, images: Any) -> dict[str, np.ndarray]:
        """``{"prediction"[, "tac_prediction", "tac_soft_prediction"], score: (N,)}``
        for ``images``: every score of `names`, higher = more in-distribution."""
        return self.score_outputs(self.outputs(images))

    def calibrate(
        self,
        name: str,
        risk: float,
        delta: float = 0.1,
        method: str = "sgr",
        validation: tuple[Any, Any] | None = None,
    ) -> ThresholdResult:
        """A threshold on score ``name`` whose selective risk is guaranteed: accepting
        ``score >= threshold`` (`tac_jax.metrics.guarantee.accept`), the base head's
        error rate among the accepted is at most ``risk`` with probability
        ``1 - delta`` (`tac_jax.metrics.guarantee`: SGR or Learn then Test).

        Calibrated on held-out labelled data: ``validation``, else the run's validation
        split (`from_run`). The gated prediction is the base head's (``prediction``), as
        in every selective metric of the report; non-finite scores rank as least
        confident (NaN, −inf) or most (+inf), as in the report. The scores fitted on the
        validation split itself (TAC's layer weights, ``tac_fused``) see it twice.

        Args:
          name: one of `names`.
          risk: the target selective risk ``r*`` in (0, 1).
          delta: ``δ`` in (0, 1).
          method: ``"sgr"`` or ``"ltt"``.
          validation: ``(images, labels)`` to calibrate on instead of the run's split.

        Returns:
          `tac_jax.metrics.guarantee.ThresholdResult` (threshold ``+inf``: reject all).

        Raises:
          ValueError: on a bad target, a score this detector lacks, or no validation data.
        """
        from tac_jax.evaluate.reporting.tables import finite

        check_guarantee(risk, delta, method)
        if name not in self.names:
            raise ValueError(f"expected a score of this detector {list(self.names)}, got {name!r}")
        if validation is None:
            split = (self.splits or {}).get("validation")
            if split is None:
                raise ValueError(
                    "expected validation data to calibrate on (a run with "
                    "config.data.validation_fraction > 0, or validation=(images, labels)), "
                    "got none"
                )
            validation = (split["image"], split["label"])
        images, labels = validation
        scores = self.score(images)
        correct = scores["prediction"] == np.asarray(labels)
        return calibrate(finite(scores[name]), correct, risk, delta, method)

    def acceptance(
        self,
        name: str,
        scores: Mapping[str, np.ndarray],
        risk: float,
        delta: float = 0.1,
        method: str = "sgr",
        log: Log | None = None,
    ) -> dict[str, np.ndarray]:
        """Which inputs to accept at a guaranteed risk: `calibrate` on the run's
        validation split, applied to ``scores`` (this detector's `score` of the inputs).

        Returns:
          ``accept`` ``(N,)`` bool (``score >= accept_threshold``: trust the base head's
          ``prediction``), ``accept_score`` (the score's name), ``accept_threshold``
          (``inf``: reject all), ``accept_risk`` (``r*``), ``accept_delta``,
          ``accept_method``, and on the validation split ``accept_coverage``,
          ``accept_calibration_risk`` and ``accept_calibration_size``.
        """
        from tac_jax.evaluate.reporting.tables import finite

        split = (self.splits or {}).get("validation")
        if log and split is not None:
            log(f"calibrating {name} on {len(split['label'])} validation examples ({method})")
        cal = self.calibrate(name, risk, delta, method)
        return {
            "accept": accept(finite(scores[name]), cal.threshold),
            "accept_score": np.asarray(name),
            "accept_threshold": np.float64(cal.threshold),
            "accept_risk": np.float64(risk),
            "accept_delta": np.float64(delta),
            "accept_method": np.asarray(method),
            "accept_coverage": np.float64(cal.coverage),
            "accept_calibration_risk": np.float64(cal.risk),
            "accept_calibration_size": np.int64(len(split["label"])),
        }


def _module_setup(module: Mapping[str, Any], *, tac_steps: int, validation: bool):
    """A `TrainSetup` and variables for a user's module (`Detector.from_module`): the
    base alone, or a TAC add-on of ``tac_steps`` steps on it (the demo's recipe)."""
    import jax.numpy as jnp

    from tac_jax.tapped import tap, wrap_variables
    from tac_jax.train.setup import build_setup

    example = module["example"]
    x = jnp.asarray(example, jnp.float32) / (255.0 if example.dtype == np.uint8 else 1.0)
    variables = module["variables"]
    tapped = tap(module["module"], variables, x, layers=module["layers"],
                 head=module["head"], activation=module["activation"])  # fmt: skip
    logits = jax.eval_shape(lambda v, x: tapped.apply(v, x), wrap_variables(variables), x)
    config = _module_config(int(logits.shape[-1]), tac_steps, validation)
    config.tac.layers = tapped.layers
    setup = build_setup(config, example.shape[1:], example.dtype, base=tapped)
    return setup, Weights(wrap_variables(variables))


def _module_config(num_classes: int, tac_steps: int, validation: bool):
    from tac_jax.configs import demo
    from tac_jax.train.config import default_config

    if tac_steps:
        config = demo.get_config("addon")  # the add-on the TAC study chose
        config.steps = int(tac_steps)
        config.base_workdir = "(a model given in memory)"
        config.tac.score_deepest = 0
    else:
        config = default_config()
        config.mode = "base"
    config.data.num_classes = num_classes
    config.data.classes = ()
    # Only whether there is one matters here: it makes the held-out-fitted scores available.
    config.data.validation_fraction = 0.1 if validation else 0.0
    return config
