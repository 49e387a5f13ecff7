"""The rule kinds a trial file's criteria are built from: one module per kind holding its model (the YAML
shape) and everything each consumer needs of it; ``cds.rules.kinds`` is the table of kinds."""
