"""The text of a document, for a model's prompt: text files as they are, PDFs through pypdf.

Extraction stops once it has `max_chars` characters (more could never fit a context window):
the work a huge document costs is bounded by what can be used of it.
"""

import io
import logging
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from apps.files.errors import FileUnreadable

logger = logging.getLogger(__name__)
# pypdf reports every odd object in a PDF as a warning: noise in the worker's log.
logging.getLogger("pypdf").setLevel(logging.ERROR)


@dataclass(frozen=True)
class DocumentText:
    text: str
    truncated: bool  # more text was left out than `max_chars` allowed


def document_text(*, content: bytes, mime_type: str, name: str, max_chars: int) -> DocumentText:
    """The document's text (at most `max_chars` characters); FileUnreadable (400) when it
    cannot be read as what it is."""
    if mime_type == "application/pdf":
        return _pdf_text(content, name, max_chars)
    text = content.decode("utf-8-sig", errors="replace").replace("\r\n", "\n")
    return DocumentText(text=text[:max_chars], truncated=len(text) > max_chars)


def _pdf_text(content: bytes, name: str, max_chars: int) -> DocumentText:
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileUnreadable(f"{name} is encrypted with a password: its text cannot be read.")
        pages: list[str] = []
        length = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            pages.append(text)
            length += len(text) + 2
            if length > max_chars:
                break
    except FileUnreadable:
        raise
    except PdfReadError as error:
        raise FileUnreadable(f"{name} is not a readable PDF ({error}).") from None
    except Exception as error:
        # A broken or hostile file makes pypdf fail in many other ways (index, key, type,
        # recursion errors, a missing optional dependency): all mean the same to the client.
        raise FileUnreadable(f"{name} could not be read as a PDF ({error!r}).") from None
    text = "\n\n".join(page.strip() for page in pages).strip()
    if not text:
        raise FileUnreadable(f"{name} has no text to read (a scanned PDF needs OCR first).")
    return DocumentText(text=text[:max_chars], truncated=length > max_chars)
