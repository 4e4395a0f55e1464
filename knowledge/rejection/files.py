"""Where the calibrated gate lives: ``<work_dir>/knowledge/gate/``. A module of its own, so
the playground can find the PR curve without importing scikit-learn."""

from __future__ import annotations

from pathlib import Path

GATE_FILE = "gate.joblib"
META_FILE = "gate.json"
CURVE_FILE = "pr_curve.png"
TITLES_FILE = "titles.npz"
# One line per re-calibration: when, why, the cross-validated F1 before and after, kept or not.
HISTORY_FILE = "history.jsonl"
# Examples learned from feedback, one file per group (written by the daemon's learning job).
LEARNED_DIR = "learned"
# The groups' own gates, one folder per group.
GROUPS_DIR = "groups"


def gate_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "knowledge" / "gate"
