"""Stored files: uploads for chat, and the platform's other files (batch input and output), with
their content in a storage backend (apps.files.backends)."""

import uuid

from django.db import models

from apps.applications.models import App


class FilePurpose(models.TextChoices):
    """What a file is for: who may read it and how long it lives follow from this."""

    UPLOAD = "upload", "Chat upload (Dify's /v1/files/upload, or a remote URL fetched for one)"
    BATCH = "batch", "Batch input (OpenAI's purpose=batch)"
    BATCH_OUTPUT = "batch_output", "Batch output"
    BATCH_ERROR = "batch_error", "Batch errors"


class StoredFile(models.Model):
    """One file of one app, owned by one end user (or by the app itself: `end_user` empty).

    The content is not in this row: `backend` names the storage that holds it under
    `storage_key`, so files written before a change of FILE_STORAGE_BACKEND stay readable.
    `size` and `sha256` are of the content as stored, measured while it was written.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="stored_files")
    end_user = models.CharField(max_length=255, blank=True, default="")
    purpose = models.CharField(max_length=16, choices=FilePurpose.choices)
    filename = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=127)
    size = models.BigIntegerField(default=0, help_text="Bytes.")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    backend = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=512)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["app", "purpose", "end_user", "-created_at"])]
        verbose_name = "stored file"

    def __str__(self) -> str:
        return f"{self.filename} ({self.size} bytes)"

    @property
    def extension(self) -> str:
        """The filename's extension without the dot, lower case ("" if none)."""
        stem, dot, extension = self.filename.rpartition(".")
        return extension.lower() if dot and stem else ""


class StoredFileChunk(models.Model):
    """A piece of a file's content in the database backend: about FILE_STORAGE_CHUNK_BYTES each,
    so content streams in and out a piece at a time and no row is too large to handle."""

    # The unique (file, index) constraint's index serves the foreign key too.
    file = models.ForeignKey(StoredFile, on_delete=models.CASCADE, related_name="+", db_index=False)
    index = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["file", "index"], name="files_chunk_file_index")
        ]

    def __str__(self) -> str:
        return f"{self.file_id} #{self.index}"
