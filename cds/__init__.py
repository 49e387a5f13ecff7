"""trial-cds: a CDS Hooks 2.0 service that screens patients for clinical-trial eligibility."""

__version__ = "0.1.0"
