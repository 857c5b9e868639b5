"""Reporting: the metric tables of a run (`tables`, `shift`, `layers`), its figures
(`plots`, `adversarial`, `reliability`; drawn with `canvas`, `colours` and
`figure_scores`), ``report.md`` (`report`, `markdown`), its data files (`data_files`:
``metrics.json``, ``summary.csv``, ``scores.npz``), and the comparison and aggregation of
several runs (`compare`, `aggregate`)."""
