"""Pre-screening a population: every patient against every open trial, ranked per trial for a coordinator.

The parts, each with one job: ``keys`` (whose resource is this), ``shared`` (resources outside any patient
compartment that a record reads), ``screening`` (one patient's resources → one row per trial, built as
`trial-cds screen` builds them), ``ranking`` (the order of a trial's candidates), ``outputs`` (CSV, JSON
lines and the HTML report, owner-only), ``sources`` and ``spill`` (the inputs, grouped by patient on disk),
``local`` (the process pool) and ``cli`` (`trial-cds prescreen`)."""
