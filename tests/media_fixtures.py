"""Real encoded media made inside the tests: audio written by libsndfile (soundfile) or FFmpeg
(PyAV), videos encoded by PyAV with an optional audio track."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SOUNDFILE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                     ".opus": ("OGG", "OPUS"), ".mp3": ("MP3", "MPEG_LAYER_III"), ".aiff": ("AIFF", "PCM_16")}
VIDEO_CODECS = {".mp4": ("mpeg4", "aac"), ".mkv": ("mpeg4", "flac"), ".webm": ("libvpx-vp9", "libopus"),
                ".avi": ("mpeg4", "pcm_s16le"), ".mov": ("mpeg4", "aac")}


def tone(rate: int = 16000, seconds: float = 1.0, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_audio(path: Path, wave: np.ndarray, rate: int) -> Path:
    """``wave`` (``[n]`` mono or ``[n, channels]``) in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in SOUNDFILE_FORMATS:
        import soundfile

        fmt, subtype = SOUNDFILE_FORMATS[path.suffix]
        soundfile.write(str(path), wave, rate, format=fmt, subtype=subtype)
        return path
    import av

    with av.open(str(path), "w", format="ipod" if path.suffix == ".m4a" else None) as container:
        stream = container.add_stream("aac", rate=rate, layout=_layout(wave))
        _encode_audio(container, stream, wave, rate)
    return path


def _encode_audio(container, stream, wave: np.ndarray, rate: int) -> None:
    import av

    planes = np.ascontiguousarray(np.atleast_2d(wave.T if wave.ndim == 2 else wave[None]), dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="mono" if len(planes) == 1 else "stereo")
    frame.sample_rate, frame.pts = rate, 0
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def _layout(wave: np.ndarray | None) -> str:
    return "stereo" if wave is not None and wave.ndim == 2 else "mono"


def frame_colours(n: int) -> list[tuple[int, int, int]]:
    """A distinct flat colour per frame, so a decoded frame tells which one it is."""
    return [(int(20 + 230 * i / max(1, n - 1)), int(200 - 150 * i / max(1, n - 1)), 90) for i in range(n)]


def write_video(path: Path, frames: int = 20, fps: int = 10, size: tuple[int, int] = (64, 48),
                audio: np.ndarray | None = None, rate: int = 16000, shade: int = 0) -> Path:
    """A clip of ``frames`` flat-coloured frames (colour ``i`` of :func:`frame_colours`, a bar of
    grey ``shade`` in the left quarter), and ``audio`` as its sound track when given."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    vcodec, acodec = VIDEO_CODECS[path.suffix]
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream(acodec, rate=rate, layout=_layout(audio)) if audio is not None else None
        for colour in frame_colours(frames):
            picture = np.empty((height, width, 3), np.uint8)
            picture[:] = colour
            picture[:, : width // 4] = shade
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            _encode_audio(container, sound, audio, rate)
    return path
