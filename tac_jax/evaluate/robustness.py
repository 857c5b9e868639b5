"""The hard cases of one run: adversarial inputs against each attack target.

PGD (L∞, random start, 10 steps of ε/10; METHODS §1) and FGSM (one step of ε) attack
a subset of the test split at every ε, once per target: ``"base"``, what the run
predicts with (the base head, or a training-time method's predictive distribution),
and, in TAC runs, ``"tac"``, TAC's code distances through the logits ``−‖a − K_j‖₁``.
A PGD section is keyed by its target (``"base"``, ``"tac"``), an FGSM one by the target
and ``"_fgsm"`` (``"base_fgsm"``, ``"tac_fgsm"``). Every score of the run is then
computed on the attacked copies: the detection AUROC of clean against attacked inputs
tests the paper's claim (e), and the base head's and TAC's accuracy on them is their
robust accuracy (`tac_jax.evaluate.reporting.adversarial.adversarial_table`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.attacks import tac_logits_fn
from tac_jax.evaluate.engine.collect import predictive_logits_fn
from tac_jax.evaluate.ood.attacks import ATTACKS, attack_dataset, make_attack
from tac_jax.evaluate.reporting.adversarial import adversarial_table

EPSILONS = (0.1, 0.3)
SIZE = 1000
TARGETS = {"base": "prediction head", "tac": "TAC codes"}


def section_key(target: str, method: str) -> str:
    """``"base"`` for PGD on the base, ``"base_fgsm"`` for FGSM on it, and so on."""
    return target if method == "pgd" else f"{target}_{method}"


# Each section's key → what it attacked, for the report.
SECTION_TARGETS = {section_key(t, m): v for m in ATTACKS for t, v in TARGETS.items()}
Score = Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]]


def attack_targets(setup: Any, state: Any) -> dict[str, Callable]:
    """``{target: x → (B, C) logits}``: ``"base"`` always, ``"tac"`` in TAC runs."""
    logits_fn = predictive_logits_fn(setup)
    variables = state.variables
    targets = {"base": lambda x: logits_fn(variables, x)}
    if setup.tac is not None:
        targets["tac"] = tac_logits_fn(setup.tac, variables)
    return targets


def adversarial_sections(
    setup: Any,
    state: Any,
    images: np.ndarray,
    labels: np.ndarray,
    clean_scores: Mapping[str, np.ndarray],
    names: Sequence[str],
    score: Score,
    *,
    epsilons: Sequence[float] = EPSILONS,
    attacks: Sequence[str] = ATTACKS,
    size: int = SIZE,
    seed: int = 0,
    bootstrap: int = 0,
    batch_size: int = 256,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``adversarial`` section of ``metrics.json``: one table per attack target.

    Args:
      setup, state: a loaded run (`tac_jax.train.setup.load_run`); image inputs.
      images, labels: the test split.
      clean_scores: every score (and ``prediction``) on ``images``, as the harness
        computed them.
      names: the scores to compare.
      score: ``images → (scores, outputs)``, the harness's scoring of a dataset.
      epsilons: the L∞ radii, in input units (images in [0, 1]).
      attacks: from ``("pgd", "fgsm")``.
      size: test examples attacked, at most (a subset fixed by ``seed``).
      seed: the subset and the random starts.
      bootstrap: resamples of the AUROC intervals.
      batch_size: examples per attacked batch.
      log: optional progress callback.

    Returns:
      ``{section_key(target, attack): adversarial_table(...)}``, PGD's first.
    """
    if not attacks or any(a not in ATTACKS for a in attacks):
        raise ValueError(f"expected attacks from {ATTACKS}, got {list(attacks)}")
    if size < 1:
        raise ValueError(f"expected at least one example to attack, got size {size}")
    epsilons = sorted(float(e) for e in epsilons)
    if not epsilons or epsilons[0] < 0:
        raise ValueError(f"expected non-negative epsilons, got {list(epsilons)}")
    n = len(labels)
    index = np.arange(n)
    if size < n:
        index = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
    x, y = np.asarray(images)[index], np.asarray(labels)[index]
    clean = {k: np.asarray(v)[index] for k, v in clean_scores.items()}
    sections = {}
    targets = attack_targets(setup, state)
    for method in [a for a in ATTACKS if a in attacks]:
        for target, logits_fn in targets.items():
            attack = make_attack(logits_fn, method=method)
            attacked = {}
            for eps in epsilons:
                if log:
                    log(
                        f"{method.upper()} on the {TARGETS[target]}, ε = {eps:g} "
                        f"({len(y)} test examples)"
                    )
                x_adv = attack_dataset(attack, x, y, eps, batch_size=batch_size, seed=seed)
                attacked[eps], _ = score(x_adv)
            sections[section_key(target, method)] = adversarial_table(
                clean, attacked, y, names, attack=attack.settings, bootstrap=bootstrap,
                seed=seed,
            )  # fmt: skip
    return sections
