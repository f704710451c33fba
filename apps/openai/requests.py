"""Validating OpenAI's chat completion requests (`POST /v1/chat/completions`, batch lines) into
the values the one admission pipeline takes (apps.gateway.pipeline).

The client sends its whole conversation: the last message is the question (`query`), the turns
before it are kept with the message as its `history`, and the generation settings it sent as
its `generation`. What OpenAI's API accepts and this platform does not do (tools, several
choices, log probabilities, audio) is refused with the parameter named, never ignored; an
argument OpenAI does not know is refused as OpenAI refuses it.
"""

import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.errors import InvalidParam
from apps.core.priorities import Priority
from apps.dify.requests import MAX_USER_CHARS, inputs_limits_check, text_clean, texts_clean

# The end user of a request that names none (`user` is optional in OpenAI's API).
DEFAULT_END_USER = "api-openai"
MAX_MESSAGES = 1000
MAX_STOP_SEQUENCES = 4
ROLES = frozenset({"system", "developer", "user", "assistant"})
# OpenAI's service tiers, as this platform's priorities (None: the app's default).
SERVICE_TIERS: dict[str, str | None] = {
    "auto": None,
    "default": None,
    "flex": Priority.LOW,
    "priority": Priority.HIGH,
}
# Accepted and without effect here: the platform records every request anyway (`store`), and the
# rest are hints for OpenAI's own caches and abuse checks.
IGNORED = frozenset({"store", "metadata", "prompt_cache_key", "safety_identifier"})
# OpenAI's arguments this platform does not implement: refused with the argument named.
UNSUPPORTED = frozenset(
    {
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "top_logprobs",
        "logit_bias",
        "audio",
        "prediction",
        "web_search_options",
        "reasoning_effort",
        "verbosity",
    }
)
KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "response_format",
        "modalities",
        "service_tier",
        # (ext) this platform's own
        "priority",
        "deadline_ms",
        "inputs",
    }
)


class OpenAIParamError(InvalidParam):
    """An invalid request, with the parameter OpenAI's error names (`param`) and its code."""

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.openai_code = code


def _unsupported(param: str, what: str) -> OpenAIParamError:
    return OpenAIParamError(
        f"{what} is not supported by this platform.", param=param, code="unsupported_parameter"
    )


@dataclass(frozen=True)
class ChatCompletionRequest:
    """A validated request: `data` is what the admission pipeline takes (as a Dify route's
    validated body), the rest says how the answer is delivered."""

    model: str
    data: dict[str, Any]
    stream: bool
    include_usage: bool


def _number(
    body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False
) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OpenAIParamError(f"'{name}' must be a number.", param=name, code="invalid_type")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise OpenAIParamError(f"'{name}' must be an integer.", param=name, code="invalid_type")
    if not low <= value <= high:
        raise OpenAIParamError(
            f"'{name}' must be between {low:g} and {high:g}; got {value}.",
            param=name,
            code="invalid_value",
        )
    return int(value) if integer else float(value)


def _text_of(content: Any, param: str, *, role: str) -> str:
    """A message's text: a string, or a list of text parts (other parts are refused)."""
    if isinstance(content, str):
        return text_clean(content)
    if content is None:
        raise OpenAIParamError(f"'{param}' must not be null.", param=param, code="invalid_value")
    if not isinstance(content, list):
        raise OpenAIParamError(
            f"'{param}' must be a string or a list of content parts.",
            param=param,
            code="invalid_type",
        )
    texts = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(text_clean(part["text"]))
        elif kind == "refusal" and role == "assistant" and isinstance(part.get("refusal"), str):
            texts.append(text_clean(part["refusal"]))
        elif kind in ("image_url", "input_audio", "file"):
            raise _unsupported(where, f"A content part of type '{kind}'")
        else:
            raise OpenAIParamError(
                f'\'{where}\' must be a content part such as {{"type": "text", "text": ...}}.',
                param=where,
                code="invalid_value",
            )
    return "\n".join(texts)


def _messages(body: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """The turns before the question, and the question (the last message, from the user)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise OpenAIParamError(
            "'messages' must be a non-empty list of messages.", param="messages", code=None
        )
    if len(messages) > MAX_MESSAGES:
        raise OpenAIParamError(
            f"'messages' may hold at most {MAX_MESSAGES} messages.",
            param="messages",
            code="invalid_value",
        )
    turns = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise OpenAIParamError(f"'{where}' must be an object.", param=where, code=None)
        role = message.get("role")
        if role in ("tool", "function") or message.get("tool_calls"):
            raise _unsupported(f"{where}.role", "Tool calling")
        if role not in ROLES:
            raise OpenAIParamError(
                f"'{where}.role' must be one of system, developer, user, assistant.",
                param=f"{where}.role",
                code="invalid_value",
            )
        turns.append({"role": role, "content": _text_of(message.get("content"), where, role=role)})
    question = turns.pop()
    if question["role"] != "user":
        raise OpenAIParamError(
            "The last message must be the user's (the question to answer).",
            param=f"messages[{len(messages) - 1}].role",
            code="invalid_value",
        )
    if not question["content"].strip():
        raise OpenAIParamError(
            "The last message has no text.", param=f"messages[{len(messages) - 1}].content"
        )
    if len(question["content"]) > settings.PLATFORM["MAX_QUERY_CHARS"]:
        raise OpenAIParamError(
            f"The last message must be at most {settings.PLATFORM['MAX_QUERY_CHARS']} characters.",
            param=f"messages[{len(messages) - 1}].content",
            code="string_above_max_length",
        )
    return turns, question["content"]


def _stop(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    sequences = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(sequences, list)
        or not all(isinstance(item, str) and item for item in sequences)
        or len(sequences) > MAX_STOP_SEQUENCES
    ):
        raise OpenAIParamError(
            f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES} strings.",
            param="stop",
            code="invalid_value",
        )
    return list(sequences)


def _check_unsupported(body: dict[str, Any]) -> None:
    for name in body:
        if name in UNSUPPORTED:
            raise _unsupported(name, f"'{name}'")
        if name not in KNOWN and name not in IGNORED:
            raise OpenAIParamError(
                f"Unrecognized request argument supplied: {name}", param=name, code=None
            )
    if body.get("n") not in (None, 1):
        raise _unsupported("n", "More than one choice ('n' other than 1)")
    if body.get("logprobs"):
        raise _unsupported("logprobs", "'logprobs'")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise _unsupported("response_format", "A response format other than text")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _unsupported("modalities", "Output other than text")


def _priority(body: dict[str, Any], header: str | None) -> str | None:
    asked = body.get("priority", header)
    if asked is not None:
        if asked not in Priority.values:
            raise OpenAIParamError(
                "'priority' must be one of high, medium, low.", param="priority", code=None
            )
        return str(asked)
    tier = body.get("service_tier")
    if tier is None:
        return None
    if tier not in SERVICE_TIERS:
        raise OpenAIParamError(
            "'service_tier' must be one of auto, default, flex, priority.",
            param="service_tier",
            code="invalid_value",
        )
    return SERVICE_TIERS[tier]


def _user(body: dict[str, Any]) -> str:
    user = body.get("user", DEFAULT_END_USER)
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_CHARS:
        raise OpenAIParamError(
            f"'user' must be a string of 1 to {MAX_USER_CHARS} characters.", param="user"
        )
    return user


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    generation: dict[str, Any] = {}
    max_tokens = _number(body, "max_completion_tokens", 1, 1_000_000, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", 1, 1_000_000, integer=True)
    for name, value in (
        ("max_tokens", max_tokens),
        ("temperature", _number(body, "temperature", 0, 2)),
        ("top_p", _number(body, "top_p", 0, 1)),
        ("seed", _number(body, "seed", -(2**63), 2**63 - 1, integer=True)),
        ("presence_penalty", _number(body, "presence_penalty", -2, 2)),
        ("frequency_penalty", _number(body, "frequency_penalty", -2, 2)),
        ("stop", _stop(body)),
    ):
        if value is not None:
            generation[name] = value
    return generation


def _stream_options(body: dict[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise OpenAIParamError(
            "'stream_options' is only allowed when 'stream' is true.",
            param="stream_options",
            code="invalid_value",
        )
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise OpenAIParamError(
            "'stream_options' must be an object like {\"include_usage\": true}.",
            param="stream_options",
        )
    return bool(options.get("include_usage", False))


def chat_completion_parse(
    body: dict[str, Any], *, priority_header: str | None = None
) -> ChatCompletionRequest:
    """The request, validated; raises OpenAIParamError naming what is wrong."""
    _check_unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIParamError("'model' must be the name of a model.", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise OpenAIParamError("'stream' must be a boolean.", param="stream", code="invalid_type")
    history, query = _messages(body)
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise OpenAIParamError("'inputs' must be an object.", param="inputs", code="invalid_type")
    deadline_ms = _number(body, "deadline_ms", 1, 24 * 3600 * 1000, integer=True)
    try:
        inputs_limits_check(inputs)
    except Exception as error:  # a serializers.ValidationError: its first message
        raise OpenAIParamError(f"'inputs' {_first(error)}", param="inputs") from None
    data: dict[str, Any] = {
        "user": _user(body),
        "query": query,
        "inputs": texts_clean(inputs),
        "history": history,
        "generation": _generation(body),
        "priority": _priority(body, priority_header),
        "deadline_ms": deadline_ms,
    }
    return ChatCompletionRequest(
        model=model,
        data=data,
        stream=stream,
        include_usage=_stream_options(body, stream),
    )


def _first(error: Exception) -> str:
    detail = getattr(error, "detail", None)
    if isinstance(detail, list) and detail:
        return str(detail[0])
    return str(detail or error)
