"""The scoring engine: one forward pass per dataset (`collect`), the statistics the
fitted scores read (`fitted`), every score's definition in one place (`registry`) and
the scores of a batch of outputs (`scoring`)."""
