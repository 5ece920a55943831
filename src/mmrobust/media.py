"""Media files as arrays: audio in every common format, and evenly spaced frames of a video.

Audio is decoded by libsndfile (``soundfile``, whose wheels ship the library: WAV, FLAC,
OGG/Vorbis, Opus, MP3, AIFF, ...) and, for what libsndfile does not read (M4A/AAC, WMA, the
audio track of a video file), by FFmpeg through PyAV (whose wheels ship FFmpeg). Frames come
from PyAV. Every reader checks the file before it decodes much of it (its size, its sample rate,
its duration) and says what is wrong in one line naming the file (:class:`DataError`; a file
that is not there is a :class:`FileNotFoundError`).

The suffixes decide which kind of cell a manifest column holds (:func:`media_kind`).
"""
from __future__ import annotations

import mimetypes
import struct
from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SOUNDFILE_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
                      ".caf", ".w64")
FFMPEG_AUDIO_SUFFIXES = (".m4a", ".aac", ".wma", ".mka")
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES + FFMPEG_AUDIO_SUFFIXES
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")
FEATURE_SUFFIXES = (".npy",)
SUFFIXES = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES, "video": VIDEO_SUFFIXES, "features": FEATURE_SUFFIXES}

RATE_RANGE = (1000, 384_000)  # Hz: a stream outside is refused, never resampled
MAX_SECONDS = 600.0  # a longer audio clip is refused before it is decoded further
MAX_VIDEO_SECONDS = 3600.0  # a longer video is refused before any frame is decoded
MAX_AUDIO_BYTES = 2 << 30  # a larger audio file is refused before it is opened
MAX_VIDEO_BYTES = 16 << 30
MAX_VIDEO_PIXELS = 8192 * 8192  # a frame larger than this is refused before it is decoded


def media_kind(cell: str) -> str | None:
    """The kind of file a cell names by its suffix (image, audio, video, features), else None."""
    suffix = Path(cell).suffix.lower()
    return next((kind for kind, suffixes in SUFFIXES.items() if suffix in suffixes), None)


def is_media_suffix(cell: str) -> bool:
    """Whether a cell ends in a suffix of a media or array file, supported or not (``.svg``,
    ``.3gp``, ``.npz``: what ``mimetypes`` knows as image, audio or video, and NumPy's)."""
    suffix = Path(cell).suffix.lower()
    if not suffix or len(suffix) > 6 or any(c.isspace() for c in suffix):
        return False
    if media_kind(cell) or suffix in (".npz", ".pkl", ".pt"):
        return True
    guessed = mimetypes.guess_type("x" + suffix, strict=False)[0] or ""
    return guessed.split("/")[0] in ("image", "audio", "video")


# --- audio -------------------------------------------------------------------------------

def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """An audio file (or a video's audio track) as float32 mono in [-1, 1] and its sample rate:
    integer samples scaled by their own range (unsigned 8-bit centred), then the channels averaged.
    A sample rate outside :data:`RATE_RANGE`, a clip over :data:`MAX_SECONDS`, no samples,
    non-finite samples, a WAV shorter than its header says: each a :class:`DataError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such audio file")
    size = path.stat().st_size
    if size > MAX_AUDIO_BYTES and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise DataError(f"{path}: {size / 2**30:.1f} GiB; audio files up to {MAX_AUDIO_BYTES / 2**30:.0f} GiB are read")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        wave, rate = _read_soundfile(path)
    else:
        wave, rate = _read_ffmpeg_audio(path)
    if wave.size == 0:
        raise DataError(f"{path}: the file holds no audio samples")
    if not np.all(np.isfinite(wave)):
        raise DataError(f"{path}: the audio holds NaN or infinite samples")
    return wave, rate


def _check_rate(path: Path, rate: int) -> None:
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise DataError(f"{path}: the header says {rate} Hz; expected a sample rate from {RATE_RANGE[0]} to "
                        f"{RATE_RANGE[1]} Hz")


def _check_seconds(path: Path, seconds: float) -> None:
    if seconds > MAX_SECONDS:
        raise DataError(f"{path}: {seconds:.0f} s long; clips up to {MAX_SECONDS:.0f} s are read")


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile

    _check_wav_header(path)
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise DataError(f"{path}: not a readable {path.suffix.lower()} audio file ({_libsndfile_reason(err)})") from None
    _check_rate(path, int(info.samplerate))
    _check_seconds(path, info.frames / info.samplerate)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as err:
        raise DataError(f"{path}: the audio does not decode ({_libsndfile_reason(err)}; a truncated file?)") from None
    return data.mean(axis=1, dtype=np.float32), int(rate)


def _libsndfile_reason(err: BaseException) -> str:
    """libsndfile's message without the path it repeats."""
    text = _one_line(err)
    return text.split("': ", 1)[1] if text.startswith("Error opening '") and "': " in text else text


def _check_wav_header(path: Path) -> None:
    """A RIFF WAV's own header, read before libsndfile: its sample rate (libsndfile's message
    for a rate of 0 does not say so), and a ``data`` chunk that declares more bytes than the
    file holds (cut short: libsndfile would read what is there, silently)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        while len(chunk := f.read(8)) == 8:
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt " and length >= 8:
                _check_rate(path, struct.unpack("<I", f.read(8)[4:8])[0])
                length -= 8
            elif name == b"data":
                left = path.stat().st_size - f.tell()
                if length != 0xFFFFFFFF and length > left:  # 0xFFFFFFFF: written with no known length
                    raise DataError(f"{path}: the WAV header declares {length:,} bytes of samples but the file holds "
                                    f"{left:,} (a truncated file)")
                return
            f.seek(length + (length & 1), 1)


def _read_ffmpeg_audio(path: Path) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise DataError(f"{path}: no audio stream in the file")
            if container.duration is not None:
                _check_seconds(path, container.duration / 1e6)
            stream = container.streams.audio[0]
            rate = int(stream.rate or stream.codec_context.sample_rate or 0)
            _check_rate(path, rate)
            return _decoded_audio(path, container, stream, rate), rate
    except av.FFmpegError as err:
        raise DataError(f"{path}: not a readable audio or video file ({_one_line(err)})") from None


def _decoded_audio(path: Path, container, stream, rate: int) -> np.ndarray:
    """Every sample of ``stream``, as float planes averaged over channels (stopping past the limit)."""
    import av

    resampler = av.AudioResampler(format="fltp", rate=rate)  # any sample format -> float planes, same rate
    parts, total, limit = [], 0, int(MAX_SECONDS * rate)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
            total += parts[-1].size
        if total > limit:
            _check_seconds(path, total / rate)
    parts += [out.to_ndarray().mean(axis=0, dtype=np.float32) for out in resampler.resample(None)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:300]


# --- video -------------------------------------------------------------------------------

def evenly_spaced(total: int, n: int) -> np.ndarray:
    """``n`` frame indices evenly spaced over ``total`` frames, first and last included (the
    evaluation sampling of the frame encoders, :mod:`mmrobust.encoders.resnet`); repeats when
    ``total < n``."""
    return np.linspace(0, total - 1, n).round().astype(np.int64)


def read_video_frames(path: str | Path, n: int, size: int) -> np.ndarray:
    """``n`` frames evenly spaced over the video's first stream, each resized to ``size`` x
    ``size`` RGB (bicubic), as uint8 ``[n, 3, size, size]``. A missing file is a
    :class:`FileNotFoundError`; no video stream, no frame, a file that decodes fewer frames
    than its index declares (truncated) or an over-long or over-large video: a :class:`DataError`."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.stat().st_size > MAX_VIDEO_BYTES:
        raise DataError(f"{path}: {path.stat().st_size / 2**30:.1f} GiB; videos up to "
                        f"{MAX_VIDEO_BYTES / 2**30:.0f} GiB are read")
    try:
        total = _frame_count(path)
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            return _frames_at(path, container, stream, evenly_spaced(total, n), total, size)
    except av.FFmpegError as err:
        raise DataError(f"{path}: not a readable video file ({_one_line(err)})") from None


def _frame_count(path: Path) -> int:
    """The frames of the first video stream: from the container's index where it keeps one, else
    counted from the packets (no decoding)."""
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream in the file")
        stream = container.streams.video[0]
        if container.duration is not None and container.duration / 1e6 > MAX_VIDEO_SECONDS:
            raise DataError(f"{path}: {container.duration / 1e6:.0f} s long; videos up to {MAX_VIDEO_SECONDS:.0f} s are read")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_VIDEO_PIXELS:
            raise DataError(f"{path}: frames of {width} x {height} pixels; up to {MAX_VIDEO_PIXELS:,} are read")
        if stream.frames > 0:
            return int(stream.frames)
        times = [float(packet.pts * packet.time_base) for packet in container.demux(stream)
                 if packet.size and packet.pts is not None]
        declared = _stream_seconds(stream)
        step = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
    if not times:
        raise DataError(f"{path}: the video stream holds no frames")
    if declared and max(times) - min(times) + step < 0.9 * declared:
        raise DataError(f"{path}: the video stream ends at {max(times):.1f} s of the {declared:.1f} s the file declares "
                        f"(a truncated file)")
    return len(times)


def _stream_seconds(stream) -> float | None:
    """A video stream's own duration: from the stream, or Matroska's ``DURATION`` tag (hh:mm:ss.f)."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in stream.metadata.items() if k.upper() == "DURATION"), None)
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _frames_at(path: Path, container, stream, wanted: np.ndarray, total: int, size: int) -> np.ndarray:
    """The frames at the ``wanted`` indices (sorted), decoding up to the last of them only."""
    out = np.empty((len(wanted), 3, size, size), dtype=np.uint8)
    last, filled, needed = int(wanted[-1]), 0, set(wanted.tolist())
    for index, frame in enumerate(container.decode(stream)):
        if index in needed:
            picture = frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="BICUBIC")
            hits = np.flatnonzero(wanted == index)
            out[hits] = picture.transpose(2, 0, 1)
            filled += len(hits)
        if index >= last:
            break
    if filled < len(wanted):
        decoded = "no frame" if filled == 0 else "fewer frames"
        raise DataError(f"{path}: {decoded} decoded of the {total} the file declares (a truncated or damaged file)")
    return out
