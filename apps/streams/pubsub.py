"""A pub/sub connection to Redis that reads its messages in batches.

redis-py's PubSub returns one message per call, each call checking the connection's health and
arming a timeout: a cost paid per token of every answer a web process streams. This connection
reads whatever has arrived in one socket read and parses it with hiredis (C) into every complete
message at once (figures: docs/benchmarks.md).
"""

import asyncio
import contextlib
import socket
import ssl
from typing import Any

import hiredis
from django.conf import settings
from redis.asyncio.connection import SSLConnection, parse_url

CONNECT_TIMEOUT_S = 5.0
READ_SIZE = 256 * 1024


class PubSubClosed(ConnectionError):
    """The connection ended (Redis went away, or it was closed)."""


def _command(*parts: str | bytes) -> bytes:
    encoded = [part.encode() if isinstance(part, str) else part for part in parts]
    out = [b"*%d\r\n" % len(encoded)]
    for part in encoded:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class PubSubConnection:
    def __init__(self, url: str | None = None) -> None:
        self.options: dict[str, Any] = dict(parse_url(url or settings.REDIS_URL))
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = hiredis.Reader()

    async def connect(self) -> None:
        options = self.options
        secure = options.get("connection_class") is SSLConnection
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            self._reader, self._writer = await asyncio.open_connection(
                options.get("host", "127.0.0.1"),
                int(options.get("port", 6379)),
                ssl=ssl.create_default_context() if secure else None,
            )
            sock = self._writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if options.get("password"):
                auth = [options["username"]] if options.get("username") else []
                self._writer.write(_command("AUTH", *auth, options["password"]))
                reply = (await self.read())[0]
                if isinstance(reply, Exception):
                    raise PubSubClosed(f"Redis refused the credentials: {reply}")

    def send(self, *parts: str | bytes) -> None:
        if self._writer is None:
            raise PubSubClosed("not connected")
        self._writer.write(_command(*parts))

    async def read(self) -> list[Any]:
        """Every complete reply that has arrived (at least one)."""
        if self._reader is None:
            raise PubSubClosed("not connected")
        replies: list[Any] = []
        while not replies:
            data = await self._reader.read(READ_SIZE)
            if not data:
                raise PubSubClosed("Redis closed the pub/sub connection")
            self._parser.feed(data)
            while (reply := self._parser.gets()) is not False:
                replies.append(reply)
        return replies

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
            self._writer = self._reader = None
