"""trial-cds: a CDS Hooks 2.0 service that screens patients for clinical-trial eligibility."""

__version__ = "0.1.0"

#: The cyclic garbage collector's thresholds in the service and in ``trial-cds screen``, once the long-lived
#: objects are frozen (Python's default: 700, 10, 10). A request's parsed body and patient record are tens
#: of thousands of containers, none in a cycle, freed by reference counting when it is answered; at 700
#: allocations per young collection the collector walks them dozens of times per request.
GC_THRESHOLDS = (10_000, 10, 10)


def build() -> str:
    """"compiled" when the hot-path modules run as mypyc extensions (the production wheel, setup.py), else
    "pure-python" (an editable or uncompiled install): said at start-up, so a slow node can be told apart."""
    from importlib.util import find_spec

    # Where the engine's module is, not the engine itself: the package's root imports none of its modules.
    engine = find_spec("cds.engine")
    return "compiled" if engine is not None and is_extension(str(engine.origin)) else "pure-python"


def is_extension(module_file: str) -> bool:
    """Whether a module loaded from ``module_file`` (its ``__file__``) is a compiled extension."""
    from importlib.machinery import EXTENSION_SUFFIXES

    return module_file.endswith(tuple(EXTENSION_SUFFIXES))
