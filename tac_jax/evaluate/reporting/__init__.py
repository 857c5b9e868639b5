"""Reporting: the metric tables of a run (`tables`, `shift`, `layers`), its figures
(`plots`, `adversarial`), ``report.md`` (`report`, `markdown`), and the comparison and
aggregation of several runs (`compare`, `aggregate`)."""
