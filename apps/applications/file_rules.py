"""What files an app takes with its requests, read from its settings (Dify's `file_upload`
feature), within the platform's ceiling FILE_UPLOAD_MAX_MB."""

from dataclasses import dataclass

from django.conf import settings

from apps.applications.models import App, extension_list
from apps.core.file_formats import FORMATS, FileKind, Format

LOCAL_FILE = "local_file"
REMOTE_URL = "remote_url"
MB = 1024 * 1024


@dataclass(frozen=True)
class FileRules:
    enabled: bool
    kinds: tuple[str, ...]
    extensions: tuple[str, ...]  # with dots; every one of `kinds` unless the app names some
    methods: tuple[str, ...]
    number_limit: int
    image_max_bytes: int
    document_max_bytes: int
    vision: bool
    image_detail: str

    @classmethod
    def of(cls, app: App) -> "FileRules":
        ceiling = int(settings.FILE_UPLOAD_MAX_MB)
        kinds = tuple(
            kind
            for kind, taken in (
                (FileKind.IMAGE, app.file_upload_images),
                (FileKind.DOCUMENT, app.file_upload_documents),
            )
            if taken
        )
        named = [
            extension
            for extension in extension_list(app.file_upload_extensions)
            if extension in FORMATS and FORMATS[extension].kind in kinds
        ]
        every = [extension for extension, fmt in FORMATS.items() if fmt.kind in kinds]
        methods = tuple(
            method
            for method, taken in (
                (LOCAL_FILE, app.file_upload_local),
                (REMOTE_URL, app.file_upload_remote),
            )
            if taken
        )
        return cls(
            enabled=app.file_upload_enabled and bool(kinds) and bool(methods),
            kinds=kinds,
            extensions=tuple(sorted(named or every)),
            methods=methods,
            number_limit=app.file_upload_number_limit,
            image_max_bytes=min(app.file_image_size_limit_mb, ceiling) * MB,
            document_max_bytes=min(app.file_document_size_limit_mb, ceiling) * MB,
            vision=app.vision_enabled,
            image_detail=app.image_detail,
        )

    def max_bytes(self, kind: str) -> int:
        return self.image_max_bytes if kind == FileKind.IMAGE else self.document_max_bytes

    def takes(self, fmt: Format) -> bool:
        return self.enabled and fmt.kind in self.kinds and fmt.extension in self.extensions_all

    @property
    def extensions_all(self) -> frozenset[str]:
        # The allowed extensions with their aliases (.jpeg beside .jpg).
        return frozenset(FORMATS[extension].extension for extension in self.extensions)
