"""Pre-registration: a study's design is hashed and recorded before its first test number.

`registration.json` (results/studies/<id>/) holds the spec digest (spec.spec_digest), the design
itself, when, and the maebench commit; `scripts/study_background.sh` commits it before the study
starts, so the git history shows the design before any test number. A later change of the design
is never absorbed silently: the page lists it as a deviation (the recorded and current digests and
the fields that differ) beside the deviations the spec declares with their reasons.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.studies.spec import UNHASHED_FIELDS, StudyError, StudySpec, spec_digest, study_results_dir


def registration_path(study: StudySpec) -> Path:
    return study_results_dir(study) / "registration.json"


def read_registration(study: StudySpec) -> dict[str, Any] | None:
    from benchmark.studies.stored import read_json_file

    path = registration_path(study)
    if not (path.exists() or path.is_symlink()):
        return None
    value = read_json_file(path, "a study registration")
    if not isinstance(value, dict) or not isinstance(value.get("spec_sha256"), str) \
            or not isinstance(value.get("design"), dict):
        raise StudyError(f"{path} is not a registration record (spec_sha256 and design expected)")
    return value


def register(study: StudySpec) -> tuple[Path, bool]:
    """Record the design (once): (path, newly written). A registration already there is kept
    as it is, whatever the spec says now: a changed design shows as a deviation."""
    from datetime import UTC, datetime

    from benchmark.core.files import atomic_write
    from benchmark.core.provenance import git_commit

    path = registration_path(study)
    if read_registration(study) is not None:
        return path, False
    record = {"study": study.id, "spec_sha256": spec_digest(study),
              "design": study.model_dump(mode="json", exclude=UNHASHED_FIELDS),
              "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "maebench_commit": git_commit(),
              "note": "recorded before the study's first test evaluation; a later change of the "
                      "design is listed on its page as a deviation"}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return path, True


def _changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def registration_status(study: StudySpec) -> dict[str, Any]:
    """What the report and page say about registration, and the undeclared deviation a changed
    design makes."""
    record = read_registration(study)
    current = spec_digest(study)
    if record is None:
        return {"registered": False, "spec_sha256": current,
                "note": "not pre-registered: this study ran before maebench recorded registrations "
                        "(its declared deviations are listed)"}
    changed = record["spec_sha256"] != current
    status = {"registered": True, "spec_sha256": record["spec_sha256"], "current_sha256": current,
              "registered_at": record.get("registered_at"), "maebench_commit": record.get("maebench_commit"),
              "changed": changed}
    if changed:
        now = study.model_dump(mode="json", exclude=UNHASHED_FIELDS)
        status["changed_fields"] = _changed_fields(record["design"], now)
    return status
