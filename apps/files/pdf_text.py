"""A PDF's text, read in a process of its own under hard limits (apps.files.extract starts it).

    python -m apps.files.pdf_text MAX_CHARS MAX_PAGES CPU_S MEMORY_MB  < document.pdf

A hostile PDF can cost any amount of work (20,000 pages sharing one content stream, a stream
that inflates to gigabytes): here the kernel bounds it. The process limits itself before it
reads a byte of the document (CPU seconds, address space, no file written), so the worker that
asked only waits, and a document past a limit kills nothing but this process.

Answers one JSON object on stdout: {"text", "truncated"} or {"refused": why} (the document is
not a readable PDF, has no text, is locked, has too many pages). No Django here: nothing of the
platform's settings or secrets reaches this process.
"""

import io
import json
import logging
import resource
import sys
from typing import Any

MB = 1024 * 1024
# Exit status when the address space ran out (MemoryError): told apart from a crash.
EXIT_MEMORY = 3


def _cap(kind: int, soft: int, hard: int | None = None) -> None:
    """Lower the limit (never above what the process may already have)."""
    hard = soft if hard is None else hard
    _, current = resource.getrlimit(kind)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def limits_apply(*, cpu_s: int, memory_mb: int) -> None:
    """CPU seconds (then SIGXCPU, and SIGKILL a second later), address space, no file."""
    _cap(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)
    _cap(resource.RLIMIT_AS, memory_mb * MB)
    _cap(resource.RLIMIT_FSIZE, 0)


def pdf_text(content: bytes, *, max_chars: int, max_pages: int) -> dict[str, object]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    # pypdf reports every odd object in a PDF as a warning: noise.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            return {"refused": "is encrypted with a password: its text cannot be read"}
        # The page tree's own count first: counting the pages themselves walks the whole tree
        # (2 s of CPU for 20,000). A count that lies is caught by walking, within the limits.
        root: Any = reader.trailer["/Root"]
        declared = root["/Pages"].get("/Count")
        count = int(declared) if isinstance(declared, int) and declared > max_pages else 0
        count = count or len(reader.pages)
        if count > max_pages:
            return {
                "refused": f"has {count} pages; documents of at most {max_pages} pages are read"
            }
        pages: list[str] = []
        length = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            pages.append(text)
            length += len(text) + 2
            if length > max_chars:
                break
    except MemoryError:
        raise
    except PdfReadError as error:
        return {"refused": f"is not a readable PDF ({error})"}
    except Exception as error:
        # A broken or hostile file makes pypdf fail in many other ways (index, key, type,
        # recursion errors): all mean the same to the client.
        return {"refused": f"could not be read as a PDF ({error!r})"}
    text = "\n\n".join(page.strip() for page in pages).strip()
    if not text:
        return {"refused": "has no text to read (a scanned PDF needs OCR first)"}
    return {"text": text[:max_chars], "truncated": length > max_chars}


def main() -> None:
    max_chars, max_pages, cpu_s, memory_mb = (int(value) for value in sys.argv[1:5])
    limits_apply(cpu_s=cpu_s, memory_mb=memory_mb)
    try:
        answer = pdf_text(sys.stdin.buffer.read(), max_chars=max_chars, max_pages=max_pages)
    except MemoryError:
        sys.exit(EXIT_MEMORY)
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
