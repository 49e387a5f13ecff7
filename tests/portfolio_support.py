"""A hospital's trial folder outside the package: one trial of its own on a value set of its own."""

from __future__ import annotations

from pathlib import Path

import yaml

LOCAL_TRIAL = "hospital-htn-study"

#: ICD-10-CM I10 as the CMS/NCHS tabular list displays it (the code the demo patient npc-01 carries).
HYPERTENSION_VALUESET = {
    "id": "local-hypertension",
    "title": "Essential hypertension (a hospital's own list)",
    "source": "ICD-10-CM: CMS/NCHS tabular list, April 2026 release",
    "include": [
        {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10", "display": "Essential (primary) hypertension"}
    ],
    "names": ["essential hypertension"],
}


def local_trial(trial_id: str = LOCAL_TRIAL, status: str = "open", valueset: str = "local-hypertension") -> dict:
    return {
        "id": trial_id,
        "title": "A hospital's study of essential hypertension",
        "short_name": "HTN-LOCAL",
        "description": "Adults with essential hypertension.",
        "source": "the hospital's protocol",
        "status": status,
        "criteria": [
            {
                "id": "hypertension",
                "kind": "inclusion",
                "text": "Essential hypertension",
                "rule": {"type": "condition", "label": "essential hypertension", "valuesets": [valueset]},
            }
        ],
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def trial_folder(base: Path, *, status: str = "open") -> Path:
    """``base/trials``: the local trial and its value set in ``valuesets/`` beside it."""
    folder = base / "trials"
    write_yaml(folder / f"{LOCAL_TRIAL}.yaml", local_trial(status=status))
    write_yaml(folder / "valuesets" / "local-hypertension.yaml", HYPERTENSION_VALUESET)
    return folder
