"""Trial files, value sets and code-system aliases: data, read by cds.trials and cds.valuesets."""
