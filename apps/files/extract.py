"""The text of a document, for a model's prompt: text files as they are, PDFs through pypdf in a
process of its own under limits (apps.files.pdf_text).

Extraction stops once it has `max_chars` characters (more could never fit a context window).
A PDF is read only within FILE_EXTRACT_* limits, enforced by the kernel on that process: its
size, its pages, CPU seconds and memory. Past one of them it is refused with FileUnreadable (a
400 on the message that carried it, nothing else); the worker waits for the process without a
thread (`document_text_async`) and never does the work itself.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from django.conf import settings

from apps.files.errors import FileUnreadable
from apps.files.pdf_text import EXIT_MEMORY

PDF = "application/pdf"
MB = 1024 * 1024


@dataclass(frozen=True)
class DocumentText:
    text: str
    truncated: bool  # more text was left out than `max_chars` allowed


@dataclass(frozen=True)
class ExtractLimits:
    max_bytes: int
    max_pages: int
    cpu_s: int
    memory_mb: int

    @classmethod
    def from_settings(cls) -> "ExtractLimits":
        return cls(
            max_bytes=int(settings.FILE_EXTRACT_MAX_MB) * MB,
            max_pages=int(settings.FILE_EXTRACT_MAX_PAGES),
            cpu_s=int(settings.FILE_EXTRACT_CPU_S),
            memory_mb=int(settings.FILE_EXTRACT_MEMORY_MB),
        )

    @property
    def wall_s(self) -> float:
        """How long the process may take in all (waiting included) before it is killed."""
        return 2.0 * self.cpu_s + 5.0


def _plain_text(content: bytes, max_chars: int) -> DocumentText:
    text = content.decode("utf-8-sig", errors="replace").replace("\r\n", "\n")
    return DocumentText(text=text[:max_chars], truncated=len(text) > max_chars)


def _command(limits: ExtractLimits, max_chars: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "apps.files.pdf_text",
        str(max_chars),
        str(limits.max_pages),
        str(limits.cpu_s),
        str(limits.memory_mb),
    ]


def _environment() -> dict[str, str]:
    """Only what the interpreter needs: no secret of the platform reaches the reader."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(settings.BASE_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }


def _size_check(content: bytes, name: str, limits: ExtractLimits) -> None:
    if len(content) > limits.max_bytes:
        raise FileUnreadable(
            f"{name} is {len(content)} bytes; documents of at most {limits.max_bytes} bytes "
            "are read."
        )


def _outcome(name: str, limits: ExtractLimits, returncode: int | None, out: bytes) -> DocumentText:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL) or returncode is None:
        raise FileUnreadable(
            f"{name} takes too much work to read (past {limits.cpu_s} s of CPU): a hostile or "
            "unusually complex PDF."
        )
    if returncode == EXIT_MEMORY:
        raise FileUnreadable(
            f"{name} takes too much memory to read (past {limits.memory_mb} MB): a hostile or "
            "unusually complex PDF."
        )
    try:
        answer = json.loads(out) if returncode == 0 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise FileUnreadable(f"{name} could not be read as a PDF (the reader failed).")
    if "refused" in answer:
        raise FileUnreadable(f"{name} {answer['refused']}.")
    return DocumentText(text=str(answer["text"]), truncated=bool(answer["truncated"]))


def document_text(*, content: bytes, mime_type: str, name: str, max_chars: int) -> DocumentText:
    """The document's text (at most `max_chars` characters); FileUnreadable (400) when it
    cannot be read as what it is, or not within the limits. Blocks until the reader is done:
    from async code, use `document_text_async`."""
    if mime_type != PDF:
        return _plain_text(content, max_chars)
    limits = ExtractLimits.from_settings()
    _size_check(content, name, limits)
    try:
        done = subprocess.run(
            _command(limits, max_chars),
            input=content,
            capture_output=True,
            env=_environment(),
            cwd=settings.BASE_DIR,
            timeout=limits.wall_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return _outcome(name, limits, None, b"")
    return _outcome(name, limits, done.returncode, done.stdout)


async def document_text_async(
    *, content: bytes, mime_type: str, name: str, max_chars: int
) -> DocumentText:
    """`document_text`, waiting for the reader on the event loop (no thread is held)."""
    if mime_type != PDF:
        return _plain_text(content, max_chars)
    limits = ExtractLimits.from_settings()
    _size_check(content, name, limits)
    process = await asyncio.create_subprocess_exec(
        *_command(limits, max_chars),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=_environment(),
        cwd=settings.BASE_DIR,
    )
    try:
        async with asyncio.timeout(limits.wall_s):
            out, _ = await process.communicate(content)
    except TimeoutError:
        process.kill()
        await process.wait()
        return _outcome(name, limits, None, b"")
    except BaseException:  # cancelled with its task: the reader goes too
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return _outcome(name, limits, process.returncode, out)
