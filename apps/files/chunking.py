"""Content as a stream of pieces, measured and bounded on the way through."""

import hashlib
from collections.abc import Iterable, Iterator

from apps.files.errors import FileTooLarge


def rechunked(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in pieces of exactly `size` (the last one shorter): whatever pieces come
    in (a client's, a parser's), at most about twice `size` is held at once."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


class Measured:
    """Passes chunks through, counting and hashing them; raises FileTooLarge as soon as more
    than `max_bytes` came, before passing on the piece that went over (nothing past the limit
    is ever written)."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self._chunks = chunks
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise FileTooLarge(f"The file is larger than {self.max_bytes} bytes.")
            self._hash.update(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()
