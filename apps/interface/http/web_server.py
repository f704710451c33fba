"""The web server: daphne, with every request body limited while it arrives.

daphne (Twisted's HTTP parser underneath) takes a request's whole body before it starts the
application, then queues all of it for the application at once: a 2 GB body to any route cost
the web process 2 GB before the platform could look at its size. Here each request checks its
body against its route's limit (apps.interface.http.body_limits) as it comes in: a declared
Content-Length over the limit is answered 413 at once, before any of the body is read (and
without `100 Continue`), a chunked body as soon as it passes the limit. What a request holds is
then at most its route's limit. Nor does Twisted parse a form body on the way (daphne never
reads what it makes of it: a 50 MB upload cost several times its size there).

A refused request is answered, its connection half-closed (the client reads the answer and the
end), and what the client still sends is read and dropped for at most LINGER_S, so that it sees
the 413 rather than a reset; then the connection is closed.

Forwarded headers are read by the platform itself, from the proxies it trusts
(apps.interface.http.forwarded), never by daphne's `--proxy-headers`, which believes anyone.

    python -m apps.interface.http.web_server -b 0.0.0.0 -p 8000 dify_platform.asgi:application

takes daphne's options; apps.operations.web_command is that command as the run commands start it.
"""

# isort: off
import daphne.server  # first: it installs the asyncio reactor Twisted must run on

# isort: on
import asyncio
import http
import io
import sys
from typing import Any
from urllib.parse import unquote

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest

APPLICATION = "dify_platform.asgi:application"
LINGER_S = 5.0


def _route(raw_target: bytes) -> str:
    """The path the router will see: decoded as daphne decodes it, without the query."""
    path = raw_target.split(b"?", 1)[0]
    try:
        return unquote(path.decode("ascii"))
    except UnicodeDecodeError:
        return ""  # daphne answers such a path 400 itself


def _answer(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class BodyLimitedRequest(WebRequest):  # type: ignore[misc]
    """daphne's request, refusing a body over its route's limit while it arrives."""

    refused = False
    _received = 0
    _limit = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted parses a form body into `args` by default, which daphne never reads: a
        # multipart upload cost several times its size there, in the event loop's thread.
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)

    def gotLength(self, length: int | None) -> None:  # Twisted's name
        # The request line is parsed, the body not yet read: the channel holds the method and
        # target until the body is complete (twisted.web.http.HTTPChannel).
        from apps.interface.http.body_limits import body_limit

        method = bytes(getattr(self.channel, "_command", b"") or b"").decode("latin-1")
        self._route = _route(bytes(getattr(self.channel, "_path", b"") or b""))
        self._method = method
        self._limit = body_limit(method, self._route)
        if length is not None and length > self._limit:
            self.content = io.BytesIO()
            self._refuse()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # Twisted's name
        if self.refused:
            return  # read and dropped while lingering
        self._received += len(data)
        if self._received > self._limit:
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            return  # answered already; the application never sees it
        super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        from apps.gateway.refusals import refusal_count
        from apps.interface.http.body_limits import body_refusal

        self.refused = True
        # Twisted sends `100 Continue` after this if the client asked: not for a refused body.
        self.requestHeaders.removeHeader(b"Expect")
        response = body_refusal(self._method, self._route)
        headers = [(k, v) for k, v in response.items() if k.lower() not in ("connection",)]
        transport = self.channel.transport
        transport.write(_answer(response.status_code, headers, response.content))
        half_close = getattr(transport, "loseWriteConnection", None)
        if half_close is not None:
            half_close()
            # The reactor runs on asyncio's loop (daphne.server installs it so).
            asyncio.get_running_loop().call_later(LINGER_S, transport.loseConnection)
        else:
            transport.loseConnection()
        refusal_count("body_too_large")


class BodyLimitedHTTPFactory(HTTPFactory):  # type: ignore[misc]
    def buildProtocol(self, addr: Any) -> Any:  # Twisted's name
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BodyLimitedRequest
        return protocol


class PlatformServer(daphne.server.Server):  # type: ignore[misc]
    """daphne's server with BodyLimitedRequest for every HTTP request.

    daphne's `run()` makes its HTTP factory itself (`self.http_factory = HTTPFactory(self)`),
    with no hook to choose another: the attribute takes ours instead, whatever run() assigns.
    """

    @property
    def http_factory(self) -> BodyLimitedHTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = BodyLimitedHTTPFactory(self)


class PlatformCommandLine(CommandLineInterface):  # type: ignore[misc]
    server_class = PlatformServer


def main() -> None:
    PlatformCommandLine().run(sys.argv[1:])


if __name__ == "__main__":
    main()
