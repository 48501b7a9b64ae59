"""The session's picture: what each alignment rests on, for a human to check at a glance.

A number alone hides an echo chosen instead of the direct sound, or a drift
line through scattered points; the correlation around the chosen peak and the
per-block lags around the drift line show both. Agg renders without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def draw(path: Path, reference: str, panels: dict[str, dict[str, Any]]) -> None:
    """panels: stream id -> the estimate's plot data plus its summary numbers."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = max(1, len(panels))
    figure, axes = plt.subplots(rows, 2, figsize=(11, 2.8 * rows), squeeze=False)
    for (stream, panel), (left, right) in zip(panels.items(), axes, strict=False):
        title = f"{stream} vs {reference}"
        if "error" in panel:
            left.text(0.5, 0.5, panel["error"], ha="center", va="center", wrap=True)
            left.set_title(title)
            left.axis("off")
            right.axis("off")
            continue
        left.plot(panel["lags_ms"], panel["curve"], lw=0.8)
        left.axvline(0, color="C3", lw=0.8, ls="--")
        left.set_xlabel("lag around the chosen peak (ms)")
        left.set_ylabel("onset-weighted GCC-PHAT")
        left.set_title(f"{title}: offset {panel['offset_s']:+.4f} s, +-{panel['bound_ms']:.2f} ms")
        times = np.asarray(panel["block_times_s"])
        if len(times):
            lags = np.asarray(panel["block_lags_ms"])
            line = np.asarray(panel["line_ms"])
            right.plot(times, lags - line, ".", ms=4, label="block peaks")
            right.axhline(0, color="C3", lw=0.8, label="drift line")
            drift = panel.get("drift_ppm")
            right.set_title("drift " + ("not estimated" if drift is None else f"{drift:+.1f} ppm"))
            right.set_xlabel("stream time (s)")
            right.set_ylabel("lag minus line (ms)")
            right.legend(loc="upper right", fontsize=7)
        else:
            right.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
