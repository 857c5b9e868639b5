"""The three methods that change training: learned confidence, deep ensembles, SNGP.

Each wraps a base module from `tac_jax.models` (see `tac_jax.methods.wrap`):

* `ConfidenceModel`: a ``Dense(1)`` confidence branch on the base's ``pre_logits``,
  trained with hints and the budget (`tac_jax.methods.confidence`); λ lives in the
  ``"confidence"`` collection and is updated by every step.
* `EnsembleModel`: ``M`` copies of the base whose parameters are stacked on a leading
  axis. Initialisation, the forward pass and the optimizer are ``jax.vmap``-ed over it,
  so one jitted step trains every member on the same batch with its own initialisation,
  dropout and optimizer state (global-norm clipping, too, is per member). On a CPU, XLA
  runs a vmapped convolution (one kernel per member) as a grouped convolution that is
  several times slower than the members one after the other: ``member_axis="unroll"``
  writes the members' forward passes out one by one instead, in the same single step.
* `SNGPModel`: every base kernel but the head's spectrally normalised on the fly
  (power-iteration vectors in the ``"spectral"`` collection), and the head replaced by a
  random-feature GP output layer on the layer-normalised ``pre_logits``; the fixed random
  features live in the ``"rff"`` collection. The Laplace covariance is accumulated after
  training over the training data (`tac_jax.evaluate.engine.fitted`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tac_jax.methods import confidence as conf_lib
from tac_jax.methods import sngp as sngp_lib
from tac_jax.methods.ensemble import ensemble_scores, mean_log_probs
from tac_jax.methods.wrap import MethodModel, MethodOutput
from tac_jax.train.objectives import split_batch

PENULTIMATE = "pre_logits"


def _penultimate(features: Mapping[str, jax.Array], method: str) -> jax.Array:
    if PENULTIMATE not in features:
        raise ValueError(
            f"expected the base to record {PENULTIMATE!r} (the features its head reads) for "
            f"{method}, got intermediates {sorted(features)}"
        )
    f = features[PENULTIMATE]
    if f.ndim != 2:
        raise ValueError(f"expected {PENULTIMATE!r} of shape (batch, D), got {f.shape}")
    return f.astype(jnp.float32)


def _cross_entropy(logits: jax.Array, y: jax.Array, num_classes: int) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy(logits, jax.nn.one_hot(y, num_classes)))


# -- learned confidence ----------------------------------------------------------------


class ConfidenceModel(MethodModel):
    """DeVries & Taylor's confidence branch beside the base's head.

    Args:
      base: the base module (records ``pre_logits``).
      num_classes: ``C``.
      budget: β, the confidence loss λ steers towards.
      lmbda: λ's starting value.
    """

    name = "confidence"
    own_collections = ("confidence",)

    def __init__(
        self,
        base: nn.Module,
        num_classes: int,
        *,
        budget: float = conf_lib.BUDGET,
        lmbda: float = conf_lib.LAMBDA_INIT,
    ):
        super().__init__(base, num_classes)
        if budget <= 0 or lmbda <= 0:
            raise ValueError(f"expected a positive budget and λ, got {budget} and {lmbda}")
        self.budget, self.lmbda = float(budget), float(lmbda)

    def init(self, key: jax.Array, x: jax.Array) -> dict[str, Any]:
        key_base, key_branch = jax.random.split(key)
        variables = self.init_base(key_base, x)
        _, features, _ = self.run_base(variables, x, train=False, rngs=None)
        dim = _penultimate(features, "learned confidence").shape[-1]
        kernel = nn.initializers.lecun_normal()(key_branch, (dim, 1), jnp.float32)
        params = {
            "base": variables.pop("params"),
            "branch": {"kernel": kernel, "bias": jnp.zeros(1)},
        }
        return {"params": params, **variables, "confidence": {"lmbda": jnp.float32(self.lmbda)}}

    def confidence_logit(self, params: Mapping[str, Any], features: Mapping[str, jax.Array]):
        f = _penultimate(features, "learned confidence")
        return (f @ params["branch"]["kernel"] + params["branch"]["bias"])[:, 0]

    def apply(self, variables, x, *, train=False, rngs=None):
        logits, features, updates = self.run_base(
            self.base_variables(variables), x, train=train, rngs=rngs
        )
        c_logit = self.confidence_logit(variables["params"], features)
        extras = {"confidence": jax.nn.sigmoid(c_logit), "confidence_logit": c_logit}
        return MethodOutput(logits, features, extras), updates

    def objective(self, params, rest, batch, key):
        x, y = split_batch(batch)
        key_drop, key_hint = jax.random.split(key)
        out, updates = self.apply(
            {"params": params, **rest}, x, train=True, rngs={"dropout": key_drop}
        )
        lmbda = rest["confidence"]["lmbda"]
        onehot = jax.nn.one_hot(y, self.num_classes)
        loss, parts = conf_lib.confidence_loss(
            key_hint, out.logits, out.extras["confidence_logit"], onehot, lmbda
        )
        new_lmbda = conf_lib.update_lambda(
            lmbda, jax.lax.stop_gradient(parts["confidence_loss"]), self.budget
        )
        updates = {**updates, "confidence": {"lmbda": new_lmbda}}
        metrics = {
            **parts,
            "loss": loss,
            "lambda": lmbda,
            "accuracy": jnp.mean(jnp.argmax(out.logits, -1) == y),
        }
        return loss, (metrics, updates)


# -- deep ensembles --------------------------------------------------------------------


MEMBER_AXES = ("vmap", "unroll")


def vmapped_optimizer(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` applied to each member of parameters stacked on a leading axis."""
    return optax.GradientTransformation(
        init=jax.vmap(tx.init), update=jax.vmap(tx.update, in_axes=(0, 0, 0))
    )


class EnsembleModel(MethodModel):
    """``members`` independently initialised copies of the base, trained in one step.

    The predictive distribution is the members' mean softmax; ``logits`` are its log.
    """

    name = "ensemble"
    has_head = False
    has_features = False

    def __init__(
        self, base: nn.Module, num_classes: int, *, members: int = 5, member_axis: str = "vmap"
    ):
        super().__init__(base, num_classes)
        if not isinstance(members, int) or members < 2:
            raise ValueError(f"expected at least 2 ensemble members, got {members!r}")
        if member_axis not in MEMBER_AXES:
            raise ValueError(f"expected member_axis in {MEMBER_AXES}, got {member_axis!r}")
        self.members = members
        self.member_axis = member_axis

    def init(self, key: jax.Array, x: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, self.members)
        variables = jax.vmap(lambda k: self.init_base(k, x))(keys)
        variables = dict(variables)
        return {"params": {"base": variables.pop("params")}, **variables}

    def member_logits(self, variables, x, *, train=False, rngs=None):
        """``(M, B, C)`` logits, the first member's intermediates and the updates."""
        rngs = dict(rngs or {})
        keys = {name: jax.random.split(k, self.members) for name, k in rngs.items()}

        def one(base_variables, member_rngs):
            return self.run_base(base_variables, x, train=train, rngs=member_rngs or None)

        stacked = self.base_variables(variables)
        if self.member_axis == "vmap":
            logits, features, updates = jax.vmap(one)(stacked, keys)
        else:
            take = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)
            outs = [one(take(stacked, i), take(keys, i)) for i in range(self.members)]
            logits, features, updates = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)
        first = jax.tree_util.tree_map(lambda h: h[0], features)
        return logits, first, updates

    def apply(self, variables, x, *, train=False, rngs=None):
        logits, features, updates = self.member_logits(variables, x, train=train, rngs=rngs)
        scores = ensemble_scores(logits)
        extras = {
            "ensemble_msp": scores["mean_msp"],
            "ensemble_entropy": scores["neg_predictive_entropy"],
            "ensemble_mi": scores["neg_mutual_information"],
        }
        return MethodOutput(mean_log_probs(logits), features, extras), updates

    def objective(self, params, rest, batch, key):
        x, y = split_batch(batch)
        logits, _, updates = self.member_logits(
            {"params": params, **rest}, x, train=True, rngs={"dropout": key}
        )
        # Summed over members: each member's gradient is that of its own mean loss.
        member_loss = jax.vmap(lambda z: _cross_entropy(z, y, self.num_classes))(logits)
        loss = jnp.sum(member_loss)
        member_acc = jnp.mean(jnp.argmax(logits, -1) == y[None], axis=-1)
        metrics = {
            "loss": jnp.mean(member_loss),
            "accuracy": jnp.mean(jnp.argmax(mean_log_probs(logits), -1) == y),
            "member_accuracy": jnp.mean(member_acc),
        }
        return loss, (metrics, updates)

    def optimizer(self, tx, params):
        del params
        return vmapped_optimizer(tx)


# -- SNGP ------------------------------------------------------------------------------


def _nest(flat: Mapping[str, jax.Array]) -> dict[str, Any]:
    """``{"a/b": x}`` → ``{"a": {"b": x}}`` (checkpoints keep nested names readable)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, last = path.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return out


def _flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, jax.Array]:
    out: dict[str, jax.Array] = {}
    for name, value in nested.items():
        path = f"{prefix}/{name}" if prefix else str(name)
        if isinstance(value, Mapping):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _layer_norm(h: jax.Array) -> jax.Array:
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.var(h, axis=-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + 1e-6)


class SNGPModel(MethodModel):
    """A spectrally normalised base with a random-feature Gaussian-process output layer.

    Args:
      base: the base module (records ``pre_logits``; its own ``head`` is not used).
      num_classes: ``C``.
      coeff: the spectral-norm bound ``c`` of every base kernel but the head's.
      power_iterations: power-iteration steps per training step.
      num_features: ``D``, random Fourier features.
      lengthscale: the RBF kernel's ℓ on the layer-normalised features; 0 picks
        ``√dim`` (normalised features have squared norm ``dim``, so unrelated inputs
        sit at kernel value ≈ e⁻¹).
      ridge: the prior precision ``r`` of the Laplace covariance.
    """

    name = "sngp"
    own_collections = ("spectral", "rff")
    has_head = False

    def __init__(
        self,
        base: nn.Module,
        num_classes: int,
        *,
        coeff: float = 0.95,
        power_iterations: int = 1,
        num_features: int = 1024,
        lengthscale: float = 0.0,
        ridge: float = 1.0,
    ):
        super().__init__(base, num_classes)
        if num_features < 1 or lengthscale < 0 or ridge <= 0:
            raise ValueError(
                f"expected num_features >= 1, lengthscale >= 0 and ridge > 0, got "
                f"{num_features}, {lengthscale} and {ridge}"
            )
        self.coeff, self.power_iterations = float(coeff), int(power_iterations)
        self.num_features, self.lengthscale, self.ridge = int(num_features), lengthscale, ridge

    @staticmethod
    def _skip(path: str) -> bool:
        return path.split("/")[0] == "head"

    def init(self, key: jax.Array, x: jax.Array) -> dict[str, Any]:
        key_base, key_u, key_rff, key_gp = jax.random.split(key, 4)
        variables = self.init_base(key_base, x)
        _, features, _ = self.run_base(variables, x, train=False, rngs=None)
        dim = _penultimate(features, "SNGP").shape[-1]
        scale = self.lengthscale or math.sqrt(dim)
        w, b = sngp_lib.random_feature_params(key_rff, dim, self.num_features, scale)
        u = sngp_lib.init_spectral_state(variables["params"], key_u, skip=self._skip)
        gp = {
            "kernel": 0.01 * jax.random.normal(key_gp, (self.num_features, self.num_classes)),
            "bias": jnp.zeros((self.num_classes,), jnp.float32),
        }
        return {
            "params": {"base": variables.pop("params"), "gp": gp},
            **variables,
            "spectral": _nest(u),
            "rff": {"kernel": w, "bias": b},
        }

    def apply(self, variables, x, *, train=False, rngs=None):
        base_variables = self.base_variables(variables)
        params, state = sngp_lib.spectral_normalize(
            base_variables["params"],
            _flatten(variables["spectral"]),
            coeff=self.coeff,
            power_iterations=self.power_iterations,
            update=train,
        )
        _, features, updates = self.run_base(
            {**base_variables, "params": params}, x, train=train, rngs=rngs
        )
        h = _layer_norm(_penultimate(features, "SNGP"))
        rff = variables["rff"]
        phi = sngp_lib.random_features(h, rff["kernel"], rff["bias"])
        gp = variables["params"]["gp"]
        logits = phi @ gp["kernel"] + gp["bias"]
        if train:
            updates = {**updates, "spectral": _nest(state)}
        return MethodOutput(logits, features, {"rff": phi}), updates

    def objective(self, params, rest, batch, key):
        x, y = split_batch(batch)
        out, updates = self.apply({"params": params, **rest}, x, train=True, rngs={"dropout": key})
        loss = _cross_entropy(out.logits, y, self.num_classes)
        metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(out.logits, -1) == y)}
        return loss, (metrics, updates)


METHOD_CLASSES = {cls.name: cls for cls in (ConfidenceModel, EnsembleModel, SNGPModel)}
