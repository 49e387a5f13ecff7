"""Pre-screening a population: every patient against every trial (issue 18)."""
