"""history.png's epoch axis is ticked in whole epochs, also for a run of
one or two epochs (autoscale alone ticks 0.95 ... 1.05 there)."""

from __future__ import annotations

import pytest

from dlcli import report


@pytest.mark.parametrize("epochs", [1, 2, 3, 12])
def test_epoch_ticks_are_whole_epochs(monkeypatch, tmp_path, epochs):
    figures = []
    real_save = report._save
    monkeypatch.setattr(report, "_save", lambda fig, path: (figures.append(fig), real_save(fig, path))[1])
    history = {"loss": [1.0 / (i + 1) for i in range(epochs)], "val_loss": [1.1 / (i + 1) for i in range(epochs)]}
    path = report.plot_history(history, tmp_path / "history.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
        assert shown and all(float(t).is_integer() for t in shown), shown
        assert lo <= 1 and hi >= epochs  # every epoch inside the axis
