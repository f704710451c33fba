"""The kinds of files the platform takes, told by extension and checked against their content
(plain Python: the app settings, uploads, requests and the workers share this vocabulary).

Images reach a vision model as they are; documents reach the prompt as their text. SVG is not
an image here (it is a program a browser runs, and vision models do not take it), and HTML is
not a document (served back, a browser would run it).
"""

import codecs
from dataclasses import dataclass


class FileKind:
    IMAGE = "image"
    DOCUMENT = "document"
    ALL = (IMAGE, DOCUMENT)


@dataclass(frozen=True)
class Format:
    extension: str  # with its dot, lower case
    kind: str
    mime_type: str  # what the platform records and serves, whatever the client declared
    label: str


_PNG = Format(".png", FileKind.IMAGE, "image/png", "PNG image")
_JPEG = Format(".jpg", FileKind.IMAGE, "image/jpeg", "JPEG image")
_GIF = Format(".gif", FileKind.IMAGE, "image/gif", "GIF image")
_WEBP = Format(".webp", FileKind.IMAGE, "image/webp", "WebP image")
_TEXT = Format(".txt", FileKind.DOCUMENT, "text/plain", "text file")
_MARKDOWN = Format(".md", FileKind.DOCUMENT, "text/markdown", "Markdown file")
_CSV = Format(".csv", FileKind.DOCUMENT, "text/csv", "CSV file")
_PDF = Format(".pdf", FileKind.DOCUMENT, "application/pdf", "PDF document")

FORMATS: dict[str, Format] = {
    ".png": _PNG,
    ".jpg": _JPEG,
    ".jpeg": _JPEG,
    ".gif": _GIF,
    ".webp": _WEBP,
    ".txt": _TEXT,
    ".text": _TEXT,
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".csv": _CSV,
    ".pdf": _PDF,
}
BY_MIME: dict[str, Format] = {
    **{fmt.mime_type: fmt for fmt in FORMATS.values()},
    "image/jpg": _JPEG,
    "text/x-markdown": _MARKDOWN,
}
# Enough of a file's start to recognise it (a PDF's header may follow some bytes of junk).
HEAD_BYTES = 8192


def extension_of(filename: str) -> str:
    stem, dot, extension = filename.rpartition(".")
    return f".{extension.lower()}" if dot and stem else ""


def format_of(filename: str) -> Format | None:
    return FORMATS.get(extension_of(filename))


def format_for_mime(mime_type: str) -> Format | None:
    """For a remote file whose URL has no known extension: its Content-Type."""
    return BY_MIME.get(mime_type.split(";", 1)[0].strip().lower())


def extensions(kind: str) -> list[str]:
    return sorted(extension for extension, fmt in FORMATS.items() if fmt.kind == kind)


def content_matches(fmt: Format, head: bytes) -> bool:
    """Whether the file's first bytes are what its extension says (a renamed program is not a
    PNG); `head` is up to HEAD_BYTES of its start."""
    if fmt is _PNG:
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if fmt is _JPEG:
        return head.startswith(b"\xff\xd8\xff")
    if fmt is _GIF:
        return head.startswith((b"GIF87a", b"GIF89a"))
    if fmt is _WEBP:
        return head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    if fmt is _PDF:
        return b"%PDF-" in head[:1024]
    return _looks_like_text(head)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        # Not final: the head may end inside a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True
