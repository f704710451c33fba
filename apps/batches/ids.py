"""The ids OpenAI's API shows for the platform's rows: `batch_<hex>`, `file-<hex>`,
`batch_req_<hex>` (a batch's request), and reading them back (a malformed one names nothing)."""

import uuid

BATCH_PREFIX = "batch_"
FILE_PREFIX = "file-"
REQUEST_PREFIX = "batch_req_"


def public_id(prefix: str, row_id: uuid.UUID) -> str:
    return f"{prefix}{row_id.hex}"


def row_id(prefix: str, public: str) -> uuid.UUID | None:
    """The row's id in an OpenAI-style id; None when it is not one of ours."""
    if not public.startswith(prefix):
        return None
    try:
        return uuid.UUID(hex=public[len(prefix) :])
    except ValueError:
        return None
