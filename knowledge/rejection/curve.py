"""The precision–recall curve an admin looks at to see what the threshold trades away."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knowledge.rejection.model import FittedGate, pr_curve


def draw_pr_curve(gate: FittedGate, path: Path, title: str = "Rejection gate") -> Path:
    """Cross-validated precision against recall, with the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = gate.example_labels
    points = pr_curve(labels, gate.oof_scores, gate.weights)
    cv = gate.cv
    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        axes.plot(points.recall, points.precision, color="#2a6fdb", lw=2, label="cross-validated")
        if cv is not None:
            axes.scatter(
                [cv.recall],
                [cv.precision],
                s=80,
                color="#d33",
                zorder=3,
                label=f"threshold {cv.threshold:.3f}: P {cv.precision:.2f} R {cv.recall:.2f} "
                f"F1 {cv.f1:.2f}",
            )
        # Iso-F1 lines help read the trade-off.
        for f1 in (0.6, 0.7, 0.8, 0.9):
            recall = np.linspace(f1 / (2 - f1) + 1e-3, 1, 100)
            axes.plot(recall, f1 * recall / (2 * recall - f1), color="#bbb", lw=0.8, ls="--")
            axes.annotate(
                f"F1={f1}", (1.0, f1 / (2 - f1)), fontsize=7, color="#888", ha="right", va="bottom"
            )
        scoring = (
            "learned gate" if gate.kind == "learned" else f"threshold on {gate.fallback_feature}"
        )
        prior = (
            f", chitchat share {1 - gate.good_share:.0%}" if gate.good_share is not None else ""
        )
        good, bad = int((labels == 1).sum()), int((labels == 0).sum())
        axes.set_title(f"{title}: {scoring}\n{good} good / {bad} bad examples{prior}", fontsize=10)
        axes.set_xlabel("recall (real questions answered)")
        axes.set_ylabel("precision (answers that were wanted)")
        axes.set_xlim(0, 1.02)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower left", fontsize=8)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        figure.savefig(tmp)
        tmp.replace(path)
    finally:
        plt.close(figure)
    return path
