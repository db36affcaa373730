"""The figure helpers compute the right arrays (the pictures themselves are looked at in the notebooks)."""
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
from course_lib import viz  # noqa: E402


def test_to_display_maps_range_and_layout():
    x = torch.tensor([-1.0, 0.0, 1.0]).reshape(1, 1, 1, 3)
    np.testing.assert_allclose(viz.to_display(x)[0, 0], [0.0, 0.5, 1.0])
    rgb = torch.zeros(2, 3, 4, 5)
    assert viz.to_display(rgb).shape == (2, 4, 5, 3)


def test_image_grid_places_each_image():
    x = torch.stack([torch.full((1, 2, 2), v) for v in (-1.0, 1.0, 0.0)])  # 3 images
    g = viz.image_grid(x, nrow=2, pad=1)
    assert g.shape == (2 * 3 + 1, 2 * 3 + 1)
    assert g[1, 1] == 0.0 and g[1, 4] == 1.0 and g[4, 1] == 0.5   # black, white, grey in reading order
    assert g[4, 4] == 1.0                                           # the empty slot stays white padding


def test_plots_run():
    labels = np.r_[np.zeros(10), np.ones(10)]
    scores = np.r_[np.linspace(0, 1, 10), np.linspace(0.5, 1.5, 10)]
    ax = viz.plot_roc(labels, {"s": scores})
    assert "AUROC" in ax.get_legend().get_texts()[0].get_text()
    viz.plot_score_hist(labels, scores, threshold=0.7)
    fig = viz.show_anomaly_maps(torch.zeros(3, 1, 4, 4), torch.rand(3, 1, 4, 4), torch.zeros(3, 1, 4, 4))
    assert len(fig.axes) == 9
