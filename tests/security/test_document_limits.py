"""Reading a document's text is bounded: a PDF is read in a process of its own under the kernel's
limits (FILE_EXTRACT_*: size, pages, CPU seconds, memory), and one past a limit fails the
question that carried it with a clear error, and nothing else; the worker's own process does
none of the work."""

import resource
import zlib
from collections.abc import Iterable
from typing import Any

import pytest
from django.test import override_settings

from apps.applications.models import ApiKey
from apps.conversations.services import Question, answer_submit
from apps.files.errors import FileUnreadable
from apps.files.extract import document_text
from apps.files.uploads import upload_accept
from apps.scheduling.models import TaskStatus
from tests.factories import make_app, make_key
from tests.files.samples import pdf
from tests.generation.tasks import message_of, run

PDF = "application/pdf"


def pdf_of(objects: list[bytes]) -> bytes:
    """A PDF of these objects (1: the catalog), with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def shared_stream_pdf(pages: int, operations: int = 200) -> bytes:
    """`pages` pages that all show one content stream: small to send, costly to read."""
    text = b" ".join(
        b"BT /F1 12 Tf 72 %d Td (word) Tj ET" % (700 - n % 600) for n in range(operations)
    )
    first_page = 5
    kids = b" ".join(b"%d 0 R" % (first_page + n) for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
        b"/Resources << /Font << /F1 4 0 R >> >> >>"
    )
    return pdf_of(objects + [page] * pages)


def inflating_pdf(megabytes: int) -> bytes:
    """One page whose content stream is small compressed and `megabytes` MB inflated."""
    packer = zlib.compressobj(9)
    chunk = b"BT /F1 12 Tf 72 700 Td (x) Tj ET " * (1024 * 1024 // 33)
    packed = b"".join(packer.compress(chunk) for _ in range(megabytes)) + packer.flush()
    return pdf_of(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed)
            + packed
            + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def read(content: bytes) -> Any:
    return document_text(content=content, mime_type=PDF, name="x.pdf", max_chars=100_000)


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_a_document_of_too_many_pages_is_refused_before_its_pages_are_read() -> None:
    with pytest.raises(FileUnreadable, match="has 20000 pages; documents of at most 500 pages"):
        read(shared_stream_pdf(20_000))


@override_settings(FILE_EXTRACT_MAX_PAGES=100_000, FILE_EXTRACT_CPU_S=1)
def test_a_document_that_takes_too_much_work_is_refused_and_the_worker_does_none_of_it() -> None:
    before = own_cpu_s()
    with pytest.raises(FileUnreadable, match=r"too much work to read \(past 1 s of CPU\)"):
        read(shared_stream_pdf(20_000, operations=2000))
    # The reading process took its second of CPU and was stopped; this process only waited.
    assert own_cpu_s() - before < 0.5


@override_settings(FILE_EXTRACT_MEMORY_MB=160)
def test_a_document_that_takes_too_much_memory_is_refused() -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FileUnreadable, match=r"too much memory to read \(past 160 MB\)"):
        read(inflating_pdf(400))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 * 1024  # KB


@override_settings(FILE_EXTRACT_MAX_MB=1)
def test_a_document_too_large_to_read_is_refused() -> None:
    with pytest.raises(FileUnreadable, match="documents of at most 1048576 bytes"):
        read(shared_stream_pdf(20_000))


def test_small_documents_still_read() -> None:
    assert read(pdf("Fjords are deep.")).text == "Fjords are deep."


def ask(api_key: ApiKey, conversation_id: str | None, files: Iterable[dict[str, str]]) -> Any:
    return answer_submit(
        question=Question(
            api_key=api_key,
            route_mode="chat",
            end_user="u1",
            query="What is in the file?",
            inputs={},
            conversation_id=conversation_id,
            files=list(files),
        )
    ).task


@pytest.mark.django_db
def test_a_document_past_a_limit_fails_its_question_only() -> None:
    app = make_app(file_upload_enabled=True, provider_config={"text": "Fine."}, max_tokens=8)
    api_key, _ = make_key(app)
    api_key = ApiKey.objects.select_related("app").get(id=api_key.id)
    content = shared_stream_pdf(20_000)
    stored = upload_accept(
        app=app,
        end_user="u1",
        filename="many.pdf",
        content_type=PDF,
        size=len(content),
        head=content[:4096],
        chunks=[content],
    )
    spec = {"type": "document", "transfer_method": "local_file", "upload_file_id": str(stored.id)}
    task = run(ask(api_key, None, [spec]))
    assert task.status == TaskStatus.FAILED
    failed = message_of(task)
    assert "many.pdf has 20000 pages" in failed.error
    # The conversation goes on.
    following = run(ask(api_key, str(failed.conversation_id), []))
    assert following.status == TaskStatus.SUCCEEDED
    assert message_of(following).answer == "Fine."
