"""The demo's prediction grid keeps every label inside its picture."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfine.engine import plots
from dfine.inference import Detections

pytest.importorskip("matplotlib")


def test_prediction_grid_labels_stay_inside_the_picture(tmp_path, monkeypatch):
    """Boxes at the top border, at the right border and sticking out of the image (the demo draws raw,
    unclipped boxes): each label's coloured band lies inside its image, as in ``dfine predict``; the
    labels at the top were cut off above the picture, those at the right border past it."""
    from dfine.demo import pictures

    boxes = np.array([[40, 0, 70, 12], [150, 60, 160, 80], [-4, -3, 30, 20], [90, 150, 110, 160]], np.float32)
    dets = Detections(boxes=boxes, scores=np.full(4, 0.9, np.float32), labels=np.array([0, 1, 2, 0]),
                      names=["circle", "square", "triangle", "circle"], category_ids=np.array([1, 2, 3, 1]),
                      image_size=(160, 160))
    seen = []

    def check(fig, path):
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        for ax in fig.axes:
            if not ax.texts:
                continue
            (x0, y0), (x1, y1) = ax.transData.transform([(0, 0), (160, 160)])  # the image, in display pixels
            for text in ax.texts:
                band = text.get_bbox_patch().get_window_extent(renderer)
                seen.append(text.get_text())
                assert band.x0 >= min(x0, x1) - 0.5 and band.x1 <= max(x0, x1) + 0.5, (text.get_text(), band, x0, x1)
                assert band.y0 >= min(y0, y1) - 0.5 and band.y1 <= max(y0, y1) + 0.5, (text.get_text(), band, y0, y1)
        return path

    monkeypatch.setattr(plots, "save_figure", check)
    image = Image.new("RGB", (160, 160), (90, 90, 90))
    pictures.plot_prediction_grid([image, image], [dets, dets], [[], []], ["circle", "square", "triangle"],
                                  tmp_path / "grid.png", cols=2)
    # the circle at the top border: below it the triangle's label, inside it its own 30x12 box hidden: left off
    assert sorted(seen) == sorted(["square 0.90", "triangle 0.90", "circle 0.90"] * 2)


def test_prediction_grid_draws_the_best_label_last(tmp_path, monkeypatch):
    """Of duplicate boxes the best's label is drawn last (on top), whatever order the detections come in."""
    from dfine.demo import pictures

    boxes = np.array([[40, 60, 90, 100]] * 3, np.float32)
    dets = Detections(boxes=boxes, scores=np.array([0.9, 0.6, 0.7], np.float32), labels=np.array([0, 1, 2]),
                      names=["circle", "square", "triangle"], category_ids=np.array([1, 2, 3]), image_size=(160, 160))
    order = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: order.extend(t.get_text() for t in fig.axes[0].texts))
    pictures.plot_prediction_grid([Image.new("RGB", (160, 160))], [dets], [[]], ["circle", "square", "triangle"],
                                  tmp_path / "grid.png", cols=1)
    assert order == ["square 0.60", "triangle 0.70", "circle 0.90"]
