"""The evaluation pictures: precision-recall curves for few and for many classes."""

import types
import warnings

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from dfine.engine import plots  # noqa: E402


def _metrics(classes: int) -> types.SimpleNamespace:
    """COCOeval-shaped precision ``[10 IoUs, 101 recalls, K, 4 areas, 3 maxDets]``, falling with recall."""
    fall = np.linspace(1.0, 0.0, 101)[None, :, None, None, None] ** np.linspace(0.5, 3, classes)[None, None, :, None, None]
    precision = np.broadcast_to(fall, (10, 101, classes, 4, 3)).copy()
    return types.SimpleNamespace(raw={"precision": precision}, per_class={i + 1: 0.3 for i in range(classes)},
                                 names={i + 1: f"class number {i}" for i in range(classes)})


@pytest.mark.parametrize("classes", [3, 61])
def test_pr_curves_legend_fits_the_picture(tmp_path, monkeypatch, classes):
    """61 classes (a COCO-like set): the legend ran past the figure's foot, cut off, and matplotlib
    warned 'Tight layout not applied' in the middle of the training output."""
    saved = {}
    real = plots.save_figure

    def keep(fig, path, dpi=110):
        fig.canvas.draw()
        legend = fig.axes[0].get_legend().get_window_extent()
        saved["inside"] = legend.y0 >= 0 and legend.y1 <= fig.bbox.y1 and legend.x1 <= fig.bbox.x1
        saved["labels"] = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plots.plot_pr_curves(_metrics(classes), tmp_path / "pr.png").is_file()
    assert saved["inside"]
    if classes == 3:
        assert saved["labels"][0].startswith("class number 0  AP50")
    else:
        assert saved["labels"][0].startswith("mean of 61 classes") and "AP 30.0" in saved["labels"][0]
        assert not any(label.startswith("class number") for label in saved["labels"])
