"""Build hook for trial-cds (the project itself is described in pyproject.toml).

Pure Python by default. With ``TRIAL_CDS_COMPILE=1`` in the environment, the modules every request runs
through (record extraction, the engine, the prefetch step, the cards) are compiled to C extensions with
mypyc: the same source, typed under ``mypy --strict``, about a quarter less CPU per request
(docs/performance.md). That is the production build (README, "installing for production"); ``scripts/build-wheel``
makes it. An editable install (``pip install -e``) is never compiled: a compiled module next to its source in
the working tree would silently shadow every later edit of the source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from setuptools import setup

HERE = Path(__file__).resolve().parent

#: The per-request hot path. Modules defining pydantic models are left out (pydantic reads their class
#: bodies at run time); everything listed is plain typed Python.
COMPILED = [
    "cds/record/__init__.py",
    "cds/record/dates.py",
    "cds/record/model.py",
    "cds/record/parse.py",
    "cds/record/reading.py",
    "cds/record/values.py",
    "cds/engine/__init__.py",
    "cds/engine/context.py",
    "cds/engine/formatting.py",
    "cds/engine/plan.py",
    "cds/engine/result.py",
    "cds/engine/rules/__init__.py",
    "cds/engine/rules/conditions.py",
    "cds/engine/rules/demographics.py",
    "cds/engine/rules/derived.py",
    "cds/engine/rules/events.py",
    "cds/engine/rules/labs.py",
    "cds/engine/rules/medications.py",
    "cds/engine/rules/observations.py",
    "cds/engine/rules/therapy_lines.py",
    "cds/engine/rules/radiotherapy.py",
    "cds/fhir/json_limits.py",
    "cds/fhir/prefetch.py",
    "cds/fhir/resources.py",
    "cds/cards.py",
]


def ext_modules() -> list[Any]:
    if os.environ.get("TRIAL_CDS_COMPILE") != "1":
        return []
    from mypyc.build import mypycify

    # Its own mypy configuration: the build environment holds mypy, not the service's dependencies,
    # which the compiled code then sees as Any (plain Python objects). `mypy --strict` with everything
    # installed is run by the test command.
    return list(mypycify(["--config-file", str(HERE / "build-mypyc.ini"), *COMPILED], opt_level="3"))


setup(ext_modules=ext_modules())
