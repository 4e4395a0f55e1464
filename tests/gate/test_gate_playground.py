"""The playground serves the gate's precision-recall curve once `calibrate` has drawn it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from adapters.playground.adapter import PAGE, PlaygroundAdapter, PlaygroundSettings
from bot.adapter import AdapterEnvironment
from knowledge.rejection.curve import draw_pr_curve
from knowledge.rejection.files import CURVE_FILE, gate_dir
from knowledge.rejection.model import fit_gate

pytestmark = pytest.mark.unit


def test_curve_route_is_404_until_calibrated_then_the_png(tmp_path: Path) -> None:
    adapter = PlaygroundAdapter(PlaygroundSettings(), AdapterEnvironment(tmp_path))
    client = TestClient(Starlette(routes=adapter.routes))
    missing = client.get("/api/gate/curve.png")
    assert missing.status_code == 404
    assert "huixiangdou-bot calibrate" in missing.json()["error"]

    rng = np.random.default_rng(0)
    labels = np.array([1] * 20 + [0] * 30)
    base = np.column_stack([rng.normal(labels, 0.7), rng.normal(size=50)])
    emb = rng.normal(size=(50, 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    gate = fit_gate(base, emb, labels, ["kb_dense_max", "noise"])
    draw_pr_curve(gate, gate_dir(tmp_path) / CURVE_FILE)

    found = client.get("/api/gate/curve.png")
    assert found.status_code == 200
    assert found.headers["content-type"] == "image/png"
    assert found.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert 'href="/api/gate/curve.png"' in PAGE.read_text(encoding="utf-8")
