"""Reverberant multi-camera sessions for the sync-audio evaluation (pyroomacoustics).

Each session is one shoebox room (RT60 0.3-0.8 s, image sources plus ray
tracing) with one or two talkers reading real recorded speech (the LibriVox
and CMU utterances that Debian's pocketsphinx-testdata ships) and 2-4 cameras
at different places, sample rates, start times, gains and clock drifts, each
with its own noise. Truth is acoustic: the direct sound of the (first) talker
aligns at the start offset minus the path-length difference over c; with two
talkers either talker's alignment is accepted (both are acoustically right;
see docs/performance.md).

Surfaces: "flat" (the evaluation's rooms) gives every wall, floor and
ceiling one absorption at all frequencies, from RT60 by Sabine's formula;
"graded" keeps that absorption at 500 Hz but lets it rise with frequency
(0.6x at 125 Hz to 2x at 4 kHz) and adds scattering (0.05-0.4), as furnished
rooms with real materials have. The random draws are the same, so a seed
gives the same rooms, positions, speech and noise with either surface.

Used by sync_accuracy.py; needs numpy, scipy, pyroomacoustics.
"""

from __future__ import annotations

import json
import shutil
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data")
ROOM_RATE = 16_000
SOUND_SPEED = 343.0


@dataclass(frozen=True)
class Condition:
    name: str
    seconds: float
    rt60: float
    snr_db: float
    cameras: int
    talkers: int = 1
    drift_ppm: tuple[float, ...] = ()
    max_delay_s: float = 8.0
    stereo: bool = False
    bits: int = 16
    container: str = "wav"


def speech_library() -> list[np.ndarray]:
    """Every utterance the package ships, 16 kHz float."""
    clips = []
    for path in sorted(SPEECH_DIR.rglob("*.wav")):
        with wave.open(str(path)) as handle:
            if handle.getframerate() != ROOM_RATE or handle.getsampwidth() != 2:
                continue
            raw = handle.readframes(handle.getnframes())
        clips.append(np.frombuffer(raw, "<i2").astype(float) / 32768)
    for path in sorted(SPEECH_DIR.glob("*.raw")):
        clips.append(np.frombuffer(path.read_bytes(), "<i2").astype(float) / 32768)
    if not clips:
        raise SystemExit(f"no speech under {SPEECH_DIR}: apt-get install pocketsphinx-testdata")
    return clips


def talk(rng: np.random.Generator, clips: list[np.ndarray], seconds: float) -> np.ndarray:
    """Utterances in random order with pauses, `seconds` long."""
    out = np.zeros(int(seconds * ROOM_RATE))
    at = int(rng.uniform(0, 1) * ROOM_RATE)
    while at < len(out):
        clip = clips[rng.integers(len(clips))]
        # a reused utterance is never the same twice: a random pitch and tempo change
        factor = rng.uniform(0.8, 1.25)
        clip = np.interp(np.arange(0, len(clip) - 1, factor), np.arange(len(clip)), clip)
        clip = clip / (np.std(clip) or 1) * rng.uniform(0.5, 1.5)
        end = min(len(out), at + len(clip))
        out[at:end] += clip[: end - at]
        at = end + int(rng.uniform(0.2, 1.5) * ROOM_RATE)
    return out


OCTAVES_HZ = [125, 250, 500, 1000, 2000, 4000]
GRADED_ABSORPTION = [0.6, 0.8, 1.0, 1.2, 1.6, 2.0]  # times the flat absorption, per octave
GRADED_SCATTERING = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4]
#: --reference close: the first stream's microphone this far from the first talker,
#: in front of and a little below the mouth
CLOSE_M = 0.3
CLOSE_DIRECTION = np.array([0.6, 0.6, -0.5]) / np.linalg.norm([0.6, 0.6, -0.5])


def _surfaces(kind: str, absorption: float):
    import pyroomacoustics as pra

    if kind == "flat":
        return pra.Material(absorption)
    bands = [min(0.9, absorption * factor) for factor in GRADED_ABSORPTION]
    return pra.Material(
        {"coeffs": bands, "center_freqs": OCTAVES_HZ},
        {"coeffs": GRADED_SCATTERING, "center_freqs": OCTAVES_HZ},
    )


def _rir_room(
    rng: np.random.Generator,
    rt60: float,
    talkers: int,
    cameras: int,
    surfaces: str = "flat",
    reference: str = "anywhere",
    ray_seed: int | None = None,
):
    import pyroomacoustics as pra

    dims = np.array([rng.uniform(4, 9), rng.uniform(3.5, 7), rng.uniform(2.6, 3.5)])
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(
        dims,
        fs=ROOM_RATE,
        materials=_surfaces(surfaces, absorption),
        max_order=min(max_order, 12),
        ray_tracing=True,
        air_absorption=True,
    )
    room.set_ray_tracing(receiver_radius=0.5, n_rays=4000, energy_thres=1e-5)

    def inside(height: tuple[float, float]) -> np.ndarray:
        return np.array(
            [
                rng.uniform(0.5, dims[0] - 0.5),
                rng.uniform(0.5, dims[1] - 0.5),
                rng.uniform(*height),
            ]
        )

    sources = [inside((1.1, 1.7)) for _ in range(talkers)]
    mics = np.array([inside((1.0, 2.2)) for _ in range(cameras)]).T
    if reference == "close":
        # the first stream is a microphone near the (first) talker, as a lapel or table
        # microphone is; placed without drawing from rng, so that everything else (room,
        # other cameras, speech, noise) is the same room as without it
        mics[:, 0] = np.clip(sources[0] + CLOSE_M * CLOSE_DIRECTION, 0.1, dims - 0.1)
    for position in sources:
        room.add_source(position)
    room.add_microphone_array(mics)
    if ray_seed is not None:
        # the rays are drawn from pyroomacoustics' own generator, seeded from the
        # machine's entropy unless told: without this the late tail (and the
        # finest structure of the hardest rooms) differs every time a seed is rendered
        pra.random.seed(numpy=ray_seed, libroom=ray_seed)
    room.compute_rir()
    return room, sources, mics


#: the band sync-audio times the direct sound in (its default analysis rate, 8 kHz)
VISIBLE_BAND_HZ = (100.0, 4000.0)
ECHO_REACH_S = 0.025  # how far from the direct peak a rival is looked for
SAME_PEAK_S = 0.0003


def visibility(first: np.ndarray, second: np.ndarray, lag: float) -> float:
    """How the direct-direct peak stands in the ideal correlation of two room responses.

    A phase-whitened correlation of two recordings of long, noise-free
    speech converges to the whitened cross-spectrum of their rooms'
    responses, so this is the best evidence a correlation of whole recordings
    can reach: noise and short recordings only blur it. (sync-audio weighs
    sound onsets, which hear less of the room, and so can do better; the
    number says which pairs leave it that alone.) Returned: the curve at the
    direct sounds' lag (`lag`, samples at ROOM_RATE) over the highest other
    peak within ECHO_REACH_S of it. Below 1, a pair of reflections outweighs
    the direct sounds even there; at or below 0, the direct lag is no peak.
    """
    size = 1 << int(np.ceil(np.log2(len(first) + len(second) + 1)))
    cross = np.fft.rfft(first, size) * np.conj(np.fft.rfft(second, size))
    freqs = np.fft.rfftfreq(size, 1 / ROOM_RATE)
    band = (freqs >= VISIBLE_BAND_HZ[0]) & (freqs <= VISIBLE_BAND_HZ[1])
    whitened = np.where(band, cross / np.maximum(np.abs(cross), 1e-30), 0)
    curve = np.fft.irfft(whitened, size)
    reach = int(ECHO_REACH_S * ROOM_RATE) + 2
    lags = np.arange(-reach, reach + 1) + round(lag)
    values = curve[lags % size]
    apart = np.abs(lags - lag)
    direct = values[apart <= 1.5].max()
    peaks = np.r_[False, (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:]), False]
    others = peaks & (apart > SAME_PEAK_S * ROOM_RATE) & (apart <= ECHO_REACH_S * ROOM_RATE)
    rival = float(values[others].max()) if others.any() else 0.0
    return round(float(direct) / max(rival, 1e-9), 3)


def _visibilities(room, distances: list[np.ndarray], cameras: int) -> dict:
    """Each camera's visibility (see `visibility`) with the reference, and along its
    best route (the route whose weakest pair is strongest): sync-audio also reaches
    a camera through others. With two talkers, the talker better seen."""
    pair = np.zeros((cameras, cameras))
    for a in range(cameras):
        for b in range(cameras):
            if a != b:
                lags = [(d[a] - d[b]) / SOUND_SPEED * ROOM_RATE for d in distances]
                pair[a, b] = max(
                    visibility(room.rir[a][t], room.rir[b][t], lag) for t, lag in enumerate(lags)
                )
    best = pair[0].copy()  # widest path from the reference, relaxed until it settles
    for _ in range(cameras):
        best = np.maximum(best, np.max(np.minimum(best[:, None], pair), axis=0))
    return {
        f"str-cam{cam + 1}": {"reference": float(pair[0, cam]), "route": float(best[cam])}
        for cam in range(1, cameras)
    }


def make_session(
    folder: Path,
    rng: np.random.Generator,
    clips: list[np.ndarray],
    cond: Condition,
    surfaces: str = "flat",
    reference: str = "anywhere",
    ray_seed: int | None = None,
) -> tuple[dict, dict]:
    """Write one session's camera files; return its truth and each camera's visibility."""
    from mdivicom_sync_audio.io import write_mp4, write_wav
    from scipy import signal

    room, sources, mics = _rir_room(
        rng, cond.rt60, cond.talkers, cond.cameras, surfaces, reference, ray_seed
    )
    margin = cond.max_delay_s + 1.0
    world = cond.seconds + 2 * margin
    speech = [talk(rng, clips, world) for _ in sources]
    if cond.talkers == 2:  # alternate turns: each talker owns every other 4-8 s stretch
        turns = np.zeros(len(speech[0]), dtype=bool)
        at, who = 0, False
        while at < len(turns):
            length = int(rng.uniform(4, 8) * ROOM_RATE)
            turns[at : at + length] = who
            at, who = at + length, not who
        speech[0] *= ~turns
        speech[1] *= turns
    starts = rng.uniform(-cond.max_delay_s, cond.max_delay_s, size=cond.cameras)
    starts[0] = rng.uniform(-1, 1)
    distances = [np.linalg.norm(mics - s[:, None], axis=0) for s in sources]
    truth: dict = {"offsets_s": {}, "alternatives_s": {}, "drift_ppm": {}}
    folder.mkdir(parents=True)
    (folder / f"{folder.name}_session.yaml").write_text(f"id: {folder.name}\n")
    for cam in range(cond.cameras):
        received = np.zeros(len(speech[0]))
        for index, talker in enumerate(speech):
            wet = signal.fftconvolve(talker, room.rir[cam][index])[: len(received)]
            received += wet
        rate = int(rng.choice([16_000, 32_000, 44_100, 48_000]))
        drift = cond.drift_ppm[cam] if cam and cam < len(cond.drift_ppm) else 0.0
        up = signal.resample_poly(received, 3, 1)  # 48 kHz for accurate interpolation
        times = (
            starts[cam] + margin + np.arange(int(cond.seconds * rate)) / rate * (1 + drift * 1e-6)
        )
        cam_signal = np.interp(times * 3 * ROOM_RATE, np.arange(len(up)), up)
        cam_signal *= rng.uniform(0.2, 3.0)
        power = float(np.mean(cam_signal**2))
        noise = rng.standard_normal(len(cam_signal)) * np.sqrt(power / 10 ** (cond.snr_db / 10))
        cam_signal = cam_signal + noise
        sid = f"str-cam{cam + 1}"
        stream_dir = folder / "raw" / "audio" / sid
        stream_dir.mkdir(parents=True)
        if cond.container == "mp4" and cam:
            write_mp4(stream_dir / f"{sid}.mp4", rate, cam_signal, mark_priming=False)
        elif cond.stereo:
            second = cam_signal * 0.7 + noise[::-1]
            write_wav(stream_dir / f"{sid}.wav", rate, np.stack([cam_signal, second], 1), cond.bits)
        else:
            write_wav(stream_dir / f"{sid}.wav", rate, cam_signal, cond.bits)
        options = []
        for dist in distances:
            path_diff = (dist[cam] - dist[0]) / SOUND_SPEED
            options.append(round(float(starts[cam] - starts[0] - path_diff), 9))
        truth["offsets_s"][sid] = options[0]
        truth["alternatives_s"][sid] = options
        truth["drift_ppm"][sid] = drift
    return truth, _visibilities(room, distances, cond.cameras)


def make_study(
    root: Path,
    conditions: list[Condition],
    seed: int,
    surfaces: str = "flat",
    reference: str = "anywhere",
) -> dict:
    """sessions/<condition>/..., truth.json and visibility.json, one session per condition.

    truth.json is written last: a study without it is a render cut short (Ctrl-C in
    hours of --render-only), whose sessions are rendered again from the start rather
    than failing on the folders it left.
    """
    if not (root / "truth.json").exists():
        shutil.rmtree(root / "sessions", ignore_errors=True)
    rng = np.random.default_rng(seed)
    clips = speech_library()
    truth, seen = {}, {}
    for index, cond in enumerate(conditions):
        folder = root / "sessions" / cond.name
        # the rays get a seed of their own (not drawn from rng: the rooms' sizes,
        # places, speech and noise stay those of studies rendered before it was set)
        truth[cond.name], seen[cond.name] = make_session(
            folder, rng, clips, cond, surfaces, reference, ray_seed=seed * 1000 + index
        )
    (root / "visibility.json").write_text(json.dumps(seen, indent=2) + "\n")
    (root / "dataset_manifest.yaml").write_text("name: sync-audio rooms\nversion: 0.1.0\n")
    # the same seed renders slightly different audio with other versions of these
    (root / "rendered_with.json").write_text(json.dumps(rendered_with(), indent=2) + "\n")
    (root / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def rendered_with() -> dict[str, str]:
    """The versions of the libraries that shape a study's audio."""
    from importlib.metadata import version

    return {name: version(name) for name in ("pyroomacoustics", "numpy", "scipy")}
