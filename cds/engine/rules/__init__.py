"""One evaluator per rule kind. Each takes its rule and the context and returns a RuleResult; none does I/O."""
