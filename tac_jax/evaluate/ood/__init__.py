"""Out-of-distribution data: image corruptions (`corruptions`), the suites built from
them, from held-out classes, synthetic noise and public benchmark pairs (`suites`),
far-OOD sets every install has (`far_sets`) and the text suites (`text_suites`)."""
