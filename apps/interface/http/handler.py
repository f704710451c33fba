"""Django's ASGI handler, with API requests served on the event loop alone.

Django wraps every ASGI request in a `ThreadSensitiveContext` and sends `request_started` and
`request_finished`, whose receivers (`close_old_connections`, `reset_queries`) are synchronous:
each request then made a thread of its own to run them in, and a second thread to join the
first (asgiref joins a context's executor in a new thread), several hops between them and the
loop. py-spy of a web process serving /v1/parameters: a fifth of the event loop's time went to
starting those threads.

API requests (the /v1 routes and the probes) need none of it: their views are async and touch
the database only through `apps.core.db.db_sync_to_async`, which hands each call's connection
back to the pool itself, so there is no request-long connection for the signals to close. Nor
do they need Django's warning line for every 4xx response, written from yet another thread hop
(`log_response`): the access log has a line for every request, and the views log what fails.
Their bodies are read within their route's limit (apps.interface.http.body_limits): a larger one is
answered 413 from its declared length, or as soon as more arrived. They get the rest of Django's
handling unchanged (request object, middleware, the disconnect watch, the response); everything
else (the admin, the chat pages, static files) goes through Django's handler as before.
"""

import asyncio
import contextlib
from tempfile import SpooledTemporaryFile
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestAborted, RequestDataTooBig
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpRequest, HttpResponseBase
from django.urls import set_script_prefix, set_urlconf

from apps.gateway.middleware import API_PREFIXES, PROBE_PATHS
from apps.interface.http.body_limits import body_limit, body_refusal


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES) or path in PROBE_PATHS


def _close_without_signal(response: HttpResponseBase) -> None:
    """What `response.close()` does but `request_finished`: a streamed answer's iterator and
    any other resource the response holds are let go."""
    closers = response._resource_closers  # type: ignore[attr-defined]
    for closer in closers:
        try:
            closer()
        except Exception:  # as in HttpResponse.close: a closer's failure is not the client's
            continue
    closers.clear()
    response.closed = True


class PlatformASGIHandler(ASGIHandler):  # type: ignore[misc]
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and is_api_path(scope.get("path", "")):
            await self._handle_api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _handle_api(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method, path = str(scope.get("method", "")), str(scope.get("path", ""))
        limit = body_limit(method, path)
        try:
            body_file = await self._read_body_within(scope, receive, limit)
        except RequestAborted:
            return
        except RequestDataTooBig:
            refusal = body_refusal(method, path)
            await self.send_response(refusal, send)
            _close_without_signal(refusal)
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None
            body_file.close()
            await self.send_response(error_response, send)
            _close_without_signal(error_response)
            return

        async def process_request() -> HttpResponseBase:
            response = await self._api_response(request)
            # The client may leave while the response is being sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # As Django's handler: a client that disconnects cancels the view (a stream ends).
        watch = asyncio.create_task(self.listen_for_disconnect(receive))
        serve = asyncio.create_task(process_request())
        try:
            await asyncio.wait((watch, serve), return_when=asyncio.FIRST_COMPLETED)
            for task in (watch, serve):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
            if not serve.cancelled():
                _close_without_signal(serve.result())
        finally:
            body_file.close()

    async def _read_body_within(
        self, scope: dict[str, Any], receive: Any, limit: int
    ) -> SpooledTemporaryFile[bytes]:
        """Django's `read_body`, refusing a body over `limit` (RequestDataTooBig) from its
        declared Content-Length before reading any of it, or as soon as more arrived: under any
        ASGI server a body costs at most its route's limit (apps.interface.http.body_limits)."""
        for name, value in scope.get("headers") or ():
            declared = value.strip()
            if name.lower() == b"content-length" and declared.isdigit() and int(declared) > limit:
                raise RequestDataTooBig()
        # Closed by the caller once the request is served (or here, on the way out).
        body_file: SpooledTemporaryFile[bytes] = SpooledTemporaryFile(  # noqa: SIM115
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b"
        )
        received = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestAborted()
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise RequestDataTooBig()
                body_file.write(chunk)
                if not message.get("more_body", False):
                    break
        except BaseException:
            body_file.close()
            raise
        body_file.seek(0)
        return body_file

    async def _api_response(self, request: HttpRequest) -> HttpResponseBase:
        """`run_get_response` without `log_response` (see the module docstring)."""
        set_urlconf(settings.ROOT_URLCONF)
        response: HttpResponseBase = await self._middleware_chain(request)  # type: ignore[attr-defined]
        response._resource_closers.append(request.close)  # type: ignore[attr-defined]
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response
