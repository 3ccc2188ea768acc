"""What a media file is, told by its content (its first bytes, a container's tracks), never by its name.

`sniff` reads the first bytes; `media_kind` tells a video from a sound-only container; `audio_demuxer` names the
FFmpeg demuxer that reads the sound of what libsndfile cannot. The audio path (audio.py) and the video path
(video.py) both ask here, so neither imports the other for it.
"""
from __future__ import annotations

from pathlib import Path

# FFmpeg demuxer per container family (the only ones opened)
DEMUXERS = {"MP4/MOV": "mov", "Matroska/WebM": "matroska", "AVI": "avi"}
# ISO brands of still images: HEIC/HEIF (Apple's photos; no decoder here) and AVIF (Pillow decodes it)
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"hevc", b"hevx"}
AVIF_BRANDS = {b"avif", b"avis"}


def sniff(path: str | Path) -> str | None:
    """The kind of file its first bytes say it is: a container of DEMUXERS, "image", "audio", "heif" (a HEIC/HEIF
    still image: an ISO box file like an MP4, told by its brands), or None."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        if head[4:8] == b"ftyp":
            brands = _ftyp_brands(head)
            if brands & AVIF_BRANDS:
                return "image"  # AVIF: Pillow decodes it
            if brands & HEIF_BRANDS:
                return "heif"
            if head[8:11] in (b"M4A", b"M4B"):
                return "audio"
        return "MP4/MOV"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" or head[:4] in (b"fLaC", b"OggS", b"FORM", b".snd") \
            or head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2") or _adts(head):
        return "audio"
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"P6", b"P5")) \
            or head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    return None


def _ftyp_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO file's leading ftyp box (as far as `head` holds it)."""
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if size >= 16 else 16)
    return {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}


def _adts(head: bytes) -> bool:
    """An ADTS AAC stream (a bare .aac file): 12 sync bits, then layer 00 (an MP3 frame has layer 01-11)."""
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def media_kind(path: str | Path) -> str | None:
    """What the file's content is, whatever its name: "video" (a container of DEMUXERS with a picture), "audio" (an
    audio file, or such a container with sound only: an M4A, an audio-only MP4 or WebM), "image", "heif", or None."""
    try:
        kind = sniff(path)
    except OSError:
        return None
    if kind in DEMUXERS:
        return "video" if _has_picture(path, kind) else "audio"
    return kind


def _has_picture(path: str | Path, kind: str) -> bool:
    """Whether a container holds a video track other than cover art; a container that does not open counts as a
    video (its reading says what is wrong with it)."""
    import av

    try:
        with av.open(str(path), format=DEMUXERS[kind], metadata_errors="ignore") as container:
            if not container.streams.audio:
                return True  # no sound either: the video path's message says what it holds
            return any(not stream.disposition & av.stream.Disposition.attached_pic for stream in container.streams.video)
    except (av.FFmpegError, OSError, ValueError):
        return True


def is_video(path: str | Path) -> bool:
    """Whether the file's content is a video container with a picture (whatever its name)."""
    return media_kind(path) == "video"


def audio_demuxer(path: str | Path) -> str | None:
    """The FFmpeg demuxer that reads the sound of a file soundfile cannot: an MP4/M4A or Matroska/WebM container, or
    a bare AAC stream (None for any other file)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
        kind = sniff(path)
    except OSError:
        return None
    if kind in DEMUXERS:
        return DEMUXERS[kind]
    if kind == "audio" and head[4:8] == b"ftyp":
        return "mov"
    return "aac" if kind == "audio" and _adts(head) else None


def ffmpeg_reason(error) -> str:
    """An FFmpeg or OS error in a few words, for a one-line message."""
    text = getattr(error, "strerror", None) or str(error)
    return str(text).split(":")[0].strip() if text else type(error).__name__
