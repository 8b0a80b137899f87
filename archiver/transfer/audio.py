"""Is this body audio, and which extension does it get? Pure: headers and first bytes in.

S3 serves whatever was uploaded, and proxies and error pages answer 200 too, so a body is
archived only when its first bytes are a known audio container (SPEC §5.2).
"""

from __future__ import annotations

from pathlib import PurePosixPath

# Bytes needed to recognise every container below.
SNIFF_LEN = 12

_TYPE_EXTENSIONS = {
    "audio/mp4": ".mp4",
    "audio/x-m4a": ".m4a",
    "audio/m4a": ".m4a",
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/webm": ".webm",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/aac": ".aac",
    "audio/amr": ".amr",
}
AUDIO_SUFFIXES = frozenset(_TYPE_EXTENSIONS.values())
# Types that are a page or an API error, never a recording, whatever the bytes say.
_NOT_AUDIO_TYPES = ("text/", "application/json", "application/xml", "application/xhtml")


def container_of(head: bytes) -> str | None:
    """The extension of the audio container `head` starts with, or None."""
    if head[4:8] == b"ftyp":
        return ".m4a" if head[8:11] == b"M4A" else ".mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"OggS":
        return ".ogg"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    if head[:5] == b"#!AMR":
        return ".amr"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        # An MPEG audio frame sync; ADTS AAC (0xFFF1/0xFFF9) shares it.
        return ".aac" if head[1] & 0xF6 == 0xF0 else ".mp3"
    return None


def media_type(content_type: str | None) -> str:
    """`audio/mp4; charset=x` -> `audio/mp4`; missing -> empty."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_audio(head: bytes, content_type: str | None) -> bool:
    """False for an HTML, XML or JSON body, or bytes of no known audio container."""
    if media_type(content_type).startswith(_NOT_AUDIO_TYPES):
        return False
    return container_of(head) is not None


def extension(content_type: str | None, head: bytes, url_path: str) -> str:
    """From `Content-Type`, then the magic bytes, then the URL path; `.bin` if none says."""
    by_type = _TYPE_EXTENSIONS.get(media_type(content_type))
    if by_type:
        return by_type
    by_magic = container_of(head)
    if by_magic:
        return by_magic
    suffix = PurePosixPath(url_path).suffix.lower()
    return suffix if suffix in AUDIO_SUFFIXES else ".bin"
