"""The session's picture: what each alignment rests on, for a human to check at a glance.

A number alone hides an echo chosen instead of the direct sound, or a drift
line through scattered points; the correlation around the chosen peak and the
per-block lags around the drift line show both. Drawn with Pillow: importing
matplotlib alone cost about 1 s of CPU per session, a third of a short run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WIDTH, ROW = 900, 230
PANEL = (70, 30, 20, 40)  # left, top, right, bottom margins inside a panel
INK, GRID, LINE, MARK, DOTS = (
    (0, 0, 0),
    (220, 220, 220),
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = (high - low) or 1.0
    raw = span / count
    step = 10 ** np.floor(np.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = np.ceil(low / step) * step
    return [float(v) for v in np.arange(first, high + step / 2, step)]


def _panel(
    draw: Any,
    box: tuple[int, int, int, int],
    x: np.ndarray,
    y: np.ndarray,
    *,
    title: str,
    xlabel: str,
    points: bool = False,
    zero_line: str = "v",
) -> None:
    """One plot in box (x0, y0, x1, y1): frame, grid, ticks, data, a red line at 0."""
    x0, y0, x1, y1 = box
    left, top, right, bottom = x0 + PANEL[0], y0 + PANEL[1], x1 - PANEL[2], y1 - PANEL[3]
    draw.text((left, y0 + 8), title, fill=INK)
    draw.text((left + (right - left) // 2 - 3 * len(xlabel), bottom + 22), xlabel, fill=INK)
    if not len(x):
        draw.rectangle((left, top, right, bottom), outline=INK)
        draw.text((left + 10, top + 10), "no data", fill=INK)
        return
    xmin, xmax = float(np.min(x)), float(np.max(x))
    ymin, ymax = float(np.min(y)), float(np.max(y))
    if zero_line == "h":
        ymin, ymax = min(ymin, 0.0), max(ymax, 0.0)
    pad = (ymax - ymin) * 0.05 or 1.0
    ymin, ymax = ymin - pad, ymax + pad
    xmax = xmax if xmax > xmin else xmin + 1

    def px(value: np.ndarray | float) -> np.ndarray:
        return left + (np.asarray(value) - xmin) / (xmax - xmin) * (right - left)

    def py(value: np.ndarray | float) -> np.ndarray:
        return bottom - (np.asarray(value) - ymin) / (ymax - ymin) * (bottom - top)

    for tick in _ticks(xmin, xmax):
        at = float(px(tick))
        draw.line((at, top, at, bottom), fill=GRID)
        draw.text((at - 12, bottom + 5), f"{tick:g}", fill=INK)
    for tick in _ticks(ymin, ymax, 4):
        at = float(py(tick))
        draw.line((left, at, right, at), fill=GRID)
        draw.text((x0 + 5, at - 6), f"{tick:.3g}", fill=INK)
    if zero_line == "v" and xmin <= 0 <= xmax:
        draw.line((float(px(0)), top, float(px(0)), bottom), fill=MARK)
    if zero_line == "h":
        draw.line((left, float(py(0)), right, float(py(0))), fill=MARK)
    xs, ys = px(x), py(y)
    if points:
        for a, b in zip(xs, ys, strict=True):
            draw.ellipse((a - 2, b - 2, a + 2, b + 2), fill=DOTS)
    else:
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=LINE, width=1)
    draw.rectangle((left, top, right, bottom), outline=INK)


def draw(path: Path, reference: str, panels: dict[str, dict[str, Any]]) -> None:
    """panels: stream id -> the estimate's plot data plus its summary numbers."""
    from PIL import Image, ImageDraw

    rows = max(1, len(panels))
    image = Image.new("RGB", (WIDTH, ROW * rows), "white")
    pen = ImageDraw.Draw(image)
    half = WIDTH // 2
    for row, (stream, panel) in enumerate(panels.items()):
        y0, y1 = row * ROW, (row + 1) * ROW
        title = f"{stream} vs {reference}"
        if "error" in panel:
            pen.text((20, y0 + 10), f"{title}: {panel['error']}", fill=MARK)
            continue
        if "lags_ms" not in panel:
            # reached through other streams only: there is no curve of its own to show
            pen.text(
                (20, y0 + 10),
                f"{title}: {panel['offset_s']:+.4f} s +-{panel['bound_ms']:.2f} ms, "
                "through other streams (no match of its own with the reference)",
                fill=MARK,
            )
            continue
        _panel(
            pen,
            (0, y0, half, y1),
            np.asarray(panel["lags_ms"]),
            np.asarray(panel["curve"]),
            title=f"{title}: {panel['offset_s']:+.4f} s +-{panel['bound_ms']:.2f} ms",
            xlabel="lag around the chosen peak (ms); GCC-PHAT, " + panel.get("view", "plain"),
        )
        drift = panel.get("drift_ppm")
        times = np.asarray(panel["block_times_s"])
        residual = (
            np.asarray(panel["block_lags_ms"]) - np.asarray(panel["line_ms"])
            if len(times)
            else np.zeros(0)
        )
        _panel(
            pen,
            (half, y0, WIDTH, y1),
            times,
            residual,
            title="block peaks minus drift line (ms); drift "
            + ("not estimated" if drift is None else f"{drift:+.1f} ppm"),
            xlabel="stream time (s)",
            points=True,
            zero_line="h",
        )
    image.save(path, optimize=False)
