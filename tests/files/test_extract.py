"""Documents' text for the prompt (apps.files.extract): text files as they are, PDFs through
pypdf, broken or locked ones refused with a clear error, and no more work than can be used."""

import pytest

from apps.files.errors import FileUnreadable
from apps.files.extract import document_text
from tests.files.samples import pdf


def test_pdf_text_is_extracted() -> None:
    extracted = document_text(
        content=pdf("Fjords are deep.", "Bergen is rainy."),
        mime_type="application/pdf",
        name="norway.pdf",
        max_chars=10_000,
    )
    assert extracted.text == "Fjords are deep.\nBergen is rainy."
    assert not extracted.truncated


def test_text_is_cut_to_what_could_be_used() -> None:
    extracted = document_text(
        content="\ufeffline one\r\nline two\r\n".encode(),
        mime_type="text/markdown",
        name="a.md",
        max_chars=12,
    )
    assert (extracted.text, extracted.truncated) == ("line one\nlin", True)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"%PDF-1.4\n garbage that is no PDF at all", "not a readable PDF|could not be read"),
        (pdf(), "no text to read"),
    ],
)
def test_unreadable_pdfs_are_refused_clearly(content: bytes, problem: str) -> None:
    with pytest.raises(FileUnreadable, match=problem):
        document_text(content=content, mime_type="application/pdf", name="x.pdf", max_chars=100)
