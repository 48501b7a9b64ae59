"""Write a synthetic openSIDS dataset of sessions with 2-4 camera audio streams.

Each session is one acoustic scene (random claps and speech-like noise bursts)
recorded by cameras that started at different times (up to +-5 s apart), at
different sample rates and gains, each with its own noise at 10 dB SNR, and
optionally with a clock drift. The true offsets (and drifts) go to
<root>/sample_truth.json, outside the sessions, for tests.

`--scenes` picks, per session in turn, a dry scene ("dry") or a reverberant
room ("room"): each camera then hears the scene through an impulse response of
its own, a direct path (1-6 m away), early reflections and an exponentially
decaying tail (RT60 0.3-0.8 s). That is cheap and deterministic, and poses the
real problem: echo peaks nearly as high as the direct one. "+mp4" makes the
second camera an MP4 file (AAC audio, with the encoder priming left unmarked,
plus a small video track), as cameras write them. "+chapters" splits the last
camera's recording into two chapter files, as a GoPro does, each synced on
its own (their offsets are under "files" in the truth). The true offset is
then the acoustic one: start offset minus the direct-path delay difference.

    python -m mdivicom_sync_audio.sample DIR [--sessions 4] [--seed 1] [--scenes dry,room+mp4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mdivicom_sync_audio.io import write_mp4, write_wav

SCENE_RATE = 48_000
RATES = (16_000, 22_050, 44_100, 48_000)


def scene(rng: np.random.Generator, seconds: float, rate: int = SCENE_RATE) -> np.ndarray:
    """Claps and speech-like bursts: sharp onsets and syllables to align on, and
    nothing that repeats. Also the scene of benchmarks/sync_chapters.py."""
    count = int(seconds * rate)
    out = np.zeros(count)
    for _ in range(int(seconds / 2)):  # claps: sharp, decaying noise bursts
        start = rng.integers(0, count - rate // 10)
        length = rate // 20
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (rate * 0.008))
        out[start : start + length] += burst * rng.uniform(0.5, 2.0)
    for _ in range(int(seconds / 1.5)):  # speech-like: noise under a syllable-rate envelope
        length = int(rng.uniform(0.3, 1.5) * rate)
        start = rng.integers(0, count - length)
        t = np.arange(length) / rate
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t), 0, None) ** 2
        out[start : start + length] += rng.standard_normal(length) * envelope * 0.5
    spectrum = np.fft.rfft(out)
    spectrum[int(7000 * len(out) / rate) :] = 0  # below every camera's Nyquist
    return np.fft.irfft(spectrum, n=count)


SOUND_SPEED = 343.0


def room_response(rng: np.random.Generator, rt60: float, distance_m: float) -> np.ndarray:
    """A synthetic impulse response at SCENE_RATE: direct path, reflections, diffuse tail.

    Levels follow simple room acoustics so the demo poses a realistic problem:
    a reflection that travels c*delay further is that much weaker (and loses
    10-40 % at the wall); the diffuse tail builds up over ~10 ms and carries the
    energy a direct-to-reverberant ratio of (1 m / distance)^2 gives (a 1 m
    critical distance, typical of a small meeting room).
    """
    length = int(rt60 * SCENE_RATE)
    response = np.zeros(length)
    direct = round(distance_m / SOUND_SPEED * SCENE_RATE)
    level = 1.0 / max(distance_m, 0.5)
    response[direct] = level
    for _ in range(8):  # early reflections, 1-25 ms after the direct sound
        delay = rng.uniform(0.001, 0.025)
        at = direct + int(delay * SCENE_RATE)
        weaker = distance_m / (distance_m + SOUND_SPEED * delay) * rng.uniform(0.6, 0.9)
        response[at] += weaker * level
    t = np.arange(length - direct) / SCENE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * (1 - np.exp(-t / 0.01))
    energy = level**2 * max(distance_m, 0.5) ** 2  # DRR = (1 m / distance)^2
    response[direct:] += tail * np.sqrt(energy / float(np.sum(tail**2)))
    return response


def _convolve(signal: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`signal` heard through `response`, as long as `signal`.

    Overlap-add in pieces a few times the response's length: one FFT over a
    5-minute scene (2^24 points at 48 kHz) took 3 s per camera, the pieces 0.5 s.
    """
    size = 1 << (4 * len(response)).bit_length()
    step = size - len(response) + 1
    kernel = np.fft.rfft(response, size)
    wet = np.zeros(len(signal) + size)
    for start in range(0, len(signal), step):
        piece = np.fft.rfft(signal[start : start + step], size)
        wet[start : start + size] += np.fft.irfft(piece * kernel, size)
    return wet[: len(signal)]


def make_session(
    folder: Path,
    rng: np.random.Generator,
    *,
    seconds: float = 30.0,
    max_delay_s: float = 5.0,
    snr_db: float = 10.0,
    drift_ppm: float = 0.0,
    room: bool = False,
    mp4: bool = False,
    chapters: bool = False,
) -> dict:
    streams = int(rng.integers(2, 5))
    margin = max_delay_s + 1.0
    sound = scene(rng, seconds + 2 * margin)
    starts = rng.uniform(-max_delay_s, max_delay_s, size=streams)
    starts[0] = rng.uniform(-max_delay_s / 2, max_delay_s / 2)
    truth = {}
    drifts = {}
    files: dict[str, list[dict]] = {}
    delays = np.zeros(streams)
    heard = [sound] * streams
    if room:
        rt60 = rng.uniform(0.3, 0.8)
        heard = []
        for index in range(streams):
            distance = rng.uniform(1.0, 6.0)
            delays[index] = round(distance / SOUND_SPEED * SCENE_RATE) / SCENE_RATE
            wet = _convolve(sound, room_response(rng, rt60, distance))
            heard.append(wet)
    folder.mkdir(parents=True)
    (folder / f"{folder.name}_session.yaml").write_text(
        f"id: {folder.name}\nsynthetic: true\nstreams: {streams}\n"
    )
    for index in range(streams):
        sid = f"str-cam{index + 1}"
        rate = int(rng.choice(RATES))
        # a camera clock off by `drift_ppm` (the reference's is taken as exact)
        skew = 1 + (drift_ppm if index else 0.0) * 1e-6
        times = starts[index] + margin + np.arange(int(seconds * rate)) / rate * skew
        signal = np.interp(times * SCENE_RATE, np.arange(len(sound)), heard[index])
        signal *= rng.uniform(0.2, 3.0)
        power = float(np.mean(signal**2))
        signal += rng.standard_normal(len(signal)) * np.sqrt(power / 10 ** (snr_db / 10))
        stream_dir = folder / "raw" / "audio" / sid
        stream_dir.mkdir(parents=True)
        # t_reference = t_stream + offset, with str-cam1 as the reference
        # acoustically, the direct sounds align: the start offset minus the path delays
        truth[sid] = round(float(starts[index] - starts[0] - (delays[index] - delays[0])), 9)
        drifts[sid] = drift_ppm if index else 0.0
        if mp4 and index == 1:
            write_mp4(stream_dir / f"{sid}.mp4", rate, signal, mark_priming=False)
        elif chapters and index == streams - 1:
            # a camera that split its recording into two chapter files, as GoPros do:
            # the second file's time starts at its own first sample
            split = len(signal) // 2
            for number, (first, part) in enumerate(((0, signal[:split]), (split, signal[split:]))):
                name = f"GX0{number + 1}0042.wav"
                write_wav(stream_dir / name, rate, part)
                offset = truth[sid] + first / rate * skew
                files.setdefault(sid, []).append({"file": name, "offset_s": round(offset, 9)})
        else:
            write_wav(stream_dir / f"{sid}.wav", rate, signal)
        (stream_dir / f"{sid}_stream.yaml").write_text(
            f"timebase:\n  kind: samples\n  rate_hz: {rate}\nmodality: audio\n"
        )
    return {
        "reference_stream": "str-cam1",
        "offsets_s": truth,
        "drift_ppm": drifts,
        # streams of several files: each file's offset (the first's is offsets_s's)
        "files": files,
        "scene": ("room" if room else "dry")
        + ("+mp4" if mp4 else "")
        + ("+chapters" if chapters else ""),
    }


def make_dataset(
    root: Path,
    sessions: int = 4,
    seed: int = 1,
    seconds: float = 30.0,
    drift_ppm: float = 0.0,
    scenes: tuple[str, ...] = ("dry",),
) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_manifest.yaml").write_text(
        "name: sync-audio sample\nversion: 0.1.0\n"
        "description: synthetic multi-camera audio, true offsets in sample_truth.json\n"
    )
    truth = {}
    for index in range(1, sessions + 1):
        name = f"ses-{index:02d}"
        scene = scenes[(index - 1) % len(scenes)]
        truth[name] = make_session(
            root / "sessions" / name,
            rng,
            seconds=seconds,
            drift_ppm=drift_ppm,
            room=scene.startswith("room"),
            mp4=scene.endswith("+mp4"),
            chapters=scene.endswith("+chapters"),
        )
    (root / "sample_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--drift-ppm", type=float, default=0.0, help="clock drift of every camera but the first"
    )
    parser.add_argument(
        "--scenes",
        default="dry",
        help="comma-separated, used in turn per session: dry, room, dry+mp4, room+mp4, "
        "dry+chapters, room+chapters (the last camera in two chapter files)",
    )
    args = parser.parse_args()
    scenes = tuple(args.scenes.split(","))
    known = {f"{room}{extra}" for room in ("dry", "room") for extra in ("", "+mp4", "+chapters")}
    unknown = set(scenes) - known
    if unknown:
        parser.error(f"unknown scene(s): {', '.join(sorted(unknown))}")
    make_dataset(args.root, args.sessions, args.seed, args.seconds, args.drift_ppm, scenes)


if __name__ == "__main__":
    main()
