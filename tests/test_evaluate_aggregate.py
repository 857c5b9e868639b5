import numpy as np
import pytest
from scipy import stats

from tac_jax.evaluate.reporting.aggregate import aggregate_summaries, summary_table


def _run(tac, msp):
    return {
        "summary": {
            "tac": {"family": "tac", "misclassification_auroc": tac, "aurc": 0.1},
            "msp": {"family": "logits", "misclassification_auroc": msp, "aurc": None},
        }
    }


def test_mean_and_t_interval_over_seeds():
    runs = [_run(0.80, 0.70), _run(0.82, 0.71), _run(0.84, 0.72)]
    agg = aggregate_summaries(runs)
    tac = agg["tac"]["misclassification_auroc"]
    values = np.array([0.80, 0.82, 0.84])
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert tac["mean"] == pytest.approx(0.82)
    assert tac["ci_high"] - tac["mean"] == pytest.approx(half)
    assert tac["n"] == 3
    # Non-numeric fields and fields missing (None) in a run are left out.
    assert "family" not in agg["tac"] and "aurc" not in agg["msp"]


def test_table_bolds_the_best_mean():
    agg = aggregate_summaries([_run(0.80, 0.90), _run(0.82, 0.92)])
    table = summary_table(agg)
    lines = table.splitlines()
    assert lines[0].startswith("| score | misclassification AUROC")
    msp_row = next(line for line in lines if line.startswith("| msp"))
    tac_row = next(line for line in lines if line.startswith("| tac"))
    assert "**0.9100 ±" in msp_row and "**" not in tac_row.split("|")[2]


def test_table_puts_augrc_after_aurc_lower_is_better():
    runs = [_run(0.8, 0.9), _run(0.8, 0.9)]
    for run, (tac, msp) in zip(runs, [(0.02, 0.03), (0.04, 0.01)], strict=True):
        run["summary"]["tac"]["augrc"], run["summary"]["msp"]["augrc"] = tac, msp
    lines = summary_table(aggregate_summaries(runs)).splitlines()
    header = [cell.strip() for cell in lines[0].split("|")]
    assert header.index("AUGRC") == header.index("AURC") + 1
    column = header.index("AUGRC")
    cells = {x.split("|")[1].strip(): x.split("|")[column] for x in lines[2:]}
    assert cells["msp"].startswith(" **0.0200 ±") and "**" not in cells["tac"]
    # Summaries from before AUGRC existed: no column.
    assert "AUGRC" not in summary_table(aggregate_summaries([_run(0.8, 0.9)]))


def test_no_runs_is_an_error():
    with pytest.raises(ValueError, match="expected at least one run"):
        aggregate_summaries([])
