"""Secrets kept in PostgreSQL (provider API keys), sealed with keys derived from settings.

`SEALING_SECRETS` lists the secrets, newest first (default: SECRET_KEY alone). Sealing uses the
first; unsealing tries each, so a new secret is put in front and the old one kept until
`manage.py reseal_secrets` has sealed every stored value again with the new one. Fernet
(AES-128-CBC with HMAC-SHA256, from `cryptography`) authenticates what it decrypts: a value
sealed with an unknown secret, or altered in the database, is refused, never misread.
"""

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

# Separates these keys from anything else derived from the same secrets.
_PURPOSE = b"dify-platform sealed secrets v1\x00"


class UnsealError(Exception):
    """A sealed value none of the configured secrets opens (rotated away, or altered)."""


@functools.lru_cache(maxsize=4)
def _sealer(secrets: tuple[str, ...]) -> MultiFernet:
    keys = [
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(_PURPOSE + s.encode()).digest()))
        for s in secrets
    ]
    return MultiFernet(keys)


def _current() -> MultiFernet:
    secrets = tuple(settings.SEALING_SECRETS) or (settings.SECRET_KEY,)
    return _sealer(secrets)


def seal(clear: str) -> str:
    return _current().encrypt(clear.encode()).decode("ascii")


def unseal(sealed: str) -> str:
    try:
        return _current().decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, UnicodeError, ValueError):
        raise UnsealError("the sealed value opens with none of SEALING_SECRETS") from None


def reseal(sealed: str) -> str:
    """The same value sealed with the newest secret."""
    try:
        return _current().rotate(sealed.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError):
        raise UnsealError("the sealed value opens with none of SEALING_SECRETS") from None


def hint(clear: str) -> str:
    """What the admin shows of a secret once saved: enough to recognise it, not to use it."""
    clear = clear.strip()
    return f"{clear[:6]}…" if len(clear) > 10 else "…"
