"""The evaluation's measure of how much a room hides the direct sound (benchmarks/sync_rooms.py).

It explains the benchmark's remaining errors, so its sign conventions matter: a
lag the wrong way round would call every room hopeless.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from sync_rooms import ROOM_RATE, visibility


def response(arrivals: dict[int, float], length: int = 4000) -> np.ndarray:
    out = np.zeros(length)
    for at, gain in arrivals.items():
        out[at] = gain
    return out


def test_direct_sound_louder_than_each_reflection_stands_out() -> None:
    first = response({100: 1.0, 140: 0.5, 230: 0.3})
    second = response({160: 1.0, 190: 0.5, 300: 0.3})
    # the direct sounds align at 100 - 160 samples (the first's index minus the second's)
    assert visibility(first, second, -60.0) > 1.5
    # the other sign is no alignment of these rooms
    assert visibility(first, second, 60.0) < 0.5


def test_reflections_arriving_together_outweigh_the_direct_sound() -> None:
    # two reflections of the second camera 3 ms after its direct sound, each nearly as
    # loud: their sum is the strongest arrival, as beside a wall and the floor
    late = 160 + round(0.003 * ROOM_RATE)
    first = response({100: 1.0})
    second = response({160: 1.0, late: 0.8, late + 1: 0.8})
    assert visibility(first, second, -60.0) < 1.0


def test_one_room_heard_twice_aligns_at_zero() -> None:
    room = response({100: 1.0, 150: 0.9, 151: 0.9, 400: 0.5})
    # however loud the reflections, a response against itself peaks where it aligns
    assert visibility(room, room, 0.0) > 1.0
    assert visibility(room, room, 50.0) < 1.0
