"""The OpenAPI 3 document of the API, served at /api/schema/ and shown at /api/docs/.

drf-spectacular generates it from the same serializers that validate requests, so requests stay
documented as they are checked. The /v1 routes are async views, not DRF views, so the document
is generated from `documented_patterns()`: one schema-only view per route (same paths, same
methods, never routed). Responses
are described as they are rendered; tests check the routes against the document (tests/gateway).
"""

from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.dify.requests import (
    FILE_TYPES,
    MAX_FILES,
    MAX_URL_CHARS,
    TRANSFER_METHODS,
    AskRequestSerializer,
    ChatRequestSerializer,
    CompletionRequestSerializer,
    StopRequestSerializer,
)
from apps.interface import conversation_apis
from apps.interface.openapi_openai import COMPONENTS as OPENAI_COMPONENTS
from apps.interface.openapi_openai import openai_documented
from apps.interface.openapi_schemas import (
    ASK_ANSWER,
    BLOCKING_ANSWER,
    CONVERSATION,
    ERROR,
    MESSAGE,
    SSE_STREAM,
    add_components,
    ref,
)
from apps.interface.routes import API_ROUTES

# Statuses each kind of route can answer with besides its success (all in the error envelope).
READ_ERRORS = (400, 401, 403, 406, 429)
WRITE_ERRORS = (400, 401, 403, 404, 406, 413, 415, 429)
ANSWER_ERRORS = (400, 401, 403, 404, 406, 413, 415, 422, 429, 503, 504)
ERROR_TEXT = {
    400: "Invalid request (`invalid_param`, `not_chat_app`, `app_unavailable`, ...)",
    401: "Missing or unknown key (`unauthorized`)",
    403: "The app is disabled (`forbidden`)",
    404: "Not found (`not_found`)",
    406: "Accept allows nothing the route sends (`not_acceptable`)",
    413: "Body too large (`request_too_large`)",
    415: "A form-encoded body that is not JSON (`unsupported_media_type`)",
    422: "Idempotency-Key reused with a different request (`idempotency_key_reused`)",
    429: "Rate limit (`rate_limit_error`) or too many answers at once (`too_many_requests`)",
    503: "Overloaded: the wait for a worker exceeds the request's budget (`overloaded`)",
    504: "Not ready within the deadline (`deadline_exceeded`)",
}
USER_QUERY = OpenApiParameter(
    "user", str, OpenApiParameter.QUERY, required=True, description="The end user's id."
)
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="(ext) A retried request with the same key gets the first one's result.",
)


def responses(success: dict[Any, Any], errors: tuple[int, ...]) -> dict[Any, Any]:
    documented: dict[Any, Any] = dict(success)
    for status in errors:
        documented[status] = OpenApiResponse(ref(ERROR), description=ERROR_TEXT[status])
    return documented


def _page(rows: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["limit", "has_more", "data"],
        "properties": {
            "limit": {"type": "integer"},
            "has_more": {"type": "boolean"},
            "data": {"type": "array", "items": ref(rows)},
        },
    }


RESULT = {
    "type": "object",
    "required": ["result"],
    "properties": {"result": {"type": "string", "enum": ["success"]}},
}


class AppKeyDocumented(BaseAuthentication):
    """How the routes authenticate, for the document: the views themselves check the key
    (apps.gateway.authentication); the stand-ins are never routed."""

    def authenticate(self, request: Request) -> None:
        return None


class AppKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.interface.openapi.AppKeyDocumented"
    name = "AppKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "`Bearer app-...`"}


class TimestampFieldSchema(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.interface.conversation_apis.TimestampField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> Any:
        return build_basic_type(OpenApiTypes.INT)


class AttachmentsFieldSchema(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.dify.requests.AttachmentsField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> Any:
        return {
            "type": "array",
            "nullable": True,
            "maxItems": MAX_FILES,
            "description": "Files with the question: uploads (`local_file`, by `upload_file_id`)"
            " or URLs (`remote_url`), as the app's `file_upload` settings allow.",
            "items": {
                "type": "object",
                "required": ["type", "transfer_method"],
                "properties": {
                    "type": {"type": "string", "enum": list(FILE_TYPES)},
                    "transfer_method": {"type": "string", "enum": list(TRANSFER_METHODS)},
                    "url": {"type": "string", "maxLength": MAX_URL_CHARS},
                    "upload_file_id": {"type": "string", "format": "uuid"},
                },
            },
        }


def _named(serializer: type, name: str) -> type:
    """The serializer under a component name of its own (the views' serializers share names)."""
    return type(f"{name}Serializer", (serializer,), {})


class _Documented(APIView):
    # Schema-only stand-ins for the async routes (apps.interface): never routed.
    authentication_classes = [AppKeyDocumented]  # noqa: RUF012  # as DRF declares it


def _stand_in(name: str, method: str, **kwargs: Any) -> type[APIView]:
    return _stand_in_methods(name, {method: kwargs})


def _stand_in_methods(name: str, methods: dict[str, dict[str, Any]]) -> type[APIView]:
    """A schema-only view answering each of `methods` (name: extend_schema's arguments)."""

    def documented(kwargs: dict[str, Any]) -> Any:
        # A function of its own: extend_schema records the schema on the function object. The
        # stand-ins only describe the routes (documented_patterns is never in a URLconf); the
        # real views are apps.interface's async views.
        def not_routed(self: APIView, request: Request, *args: Any, **kw: Any) -> Response:
            return Response(status=404)

        return extend_schema(**kwargs)(not_routed)

    return type(name, (_Documented,), {method: documented(kw) for method, kw in methods.items()})


def _answer_stand_in(
    name: str, serializer: type, success: dict[Any, Any], description: str
) -> type[APIView]:
    return _stand_in(
        name,
        "post",
        operation_id=name,
        description=description,
        request=serializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses=responses(success, ANSWER_ERRORS),
    )


TASK_ID = OpenApiParameter("task_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
ANSWER_TEXT = (
    "`response_mode` blocking: one JSON document (XML with `Accept: application/xml`); "
    "streaming: Server-Sent Events."
)


def _stop(route: str) -> type[APIView]:
    return _stand_in(
        f"{route}_stop",
        "post",
        operation_id=f"{route}_stop",
        parameters=[TASK_ID],
        request=StopRequestSerializer,
        # 404: a task id that is not a UUID matches no route.
        responses=responses({200: RESULT}, (400, 401, 403, 404, 406, 413, 415, 429)),
    )


def _events(route: str) -> type[APIView]:
    return _stand_in(
        f"{route}_events",
        "get",
        operation_id=f"{route}_events",
        parameters=[
            TASK_ID,
            USER_QUERY,
            OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False),
        ],
        responses=responses(
            {(200, "text/event-stream"): OpenApiResponse(SSE_STREAM, description="The events.")},
            (*READ_ERRORS, 404),
        ),
    )


def _conversation_routes() -> dict[str, type[APIView]]:
    """The conversation-facing routes, documented from the serializers that check them."""
    page_errors = (*READ_ERRORS, 404)
    list_query = _named(conversation_apis.ConversationListQuery, "ConversationListQuery")
    conversations = _stand_in(
        "conversation_list",
        "get",
        operation_id="conversation_list",
        parameters=[list_query],
        responses=responses({200: _page(CONVERSATION)}, page_errors),
    )
    conversation = _stand_in(
        "conversation_delete",
        "delete",
        operation_id="conversation_delete",
        request=_named(conversation_apis.UserSerializer, "EndUser"),
        responses=responses({204: None}, WRITE_ERRORS),
    )
    rename = _stand_in(
        "conversation_rename",
        "post",
        operation_id="conversation_rename",
        request=_named(conversation_apis.ConversationRenameBody, "ConversationRename"),
        responses=responses({200: ref(CONVERSATION)}, (*WRITE_ERRORS, 504)),
    )
    messages = _stand_in(
        "message_list",
        "get",
        operation_id="message_list",
        parameters=[
            USER_QUERY,
            OpenApiParameter("conversation_id", OpenApiTypes.UUID, required=True),
            OpenApiParameter("first_id", OpenApiTypes.UUID, required=False),
            OpenApiParameter("limit", int, required=False, description="1 to 100; default 20."),
        ],
        responses=responses({200: _page(MESSAGE)}, page_errors),
    )
    feedback = _stand_in(
        "message_feedback",
        "post",
        operation_id="message_feedback",
        request=_named(conversation_apis.MessageFeedbackBody, "MessageFeedback"),
        responses=responses({200: RESULT}, WRITE_ERRORS),
    )

    def described(name: str, component: str) -> type[APIView]:
        return _stand_in(
            name, "get", operation_id=name, responses=responses({200: ref(component)}, READ_ERRORS)
        )

    return {
        "conversations": conversations,
        "conversation": conversation,
        "conversation-name": rename,
        "messages": messages,
        "message-feedbacks": feedback,
        "parameters": described("app_parameters", "AppParameters"),
        "info": described("app_info", "AppInfo"),
        "meta": described("app_meta", "AppMeta"),
    }


UPLOAD_FORM = {
    "type": "object",
    "required": ["file", "user"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "One file."},
        "user": {"type": "string", "description": "The end user the file belongs to."},
    },
}
UPLOAD_ERRORS = {
    400: "No file (`no_file_uploaded`), more than one (`too_many_files`), no filename "
    "(`filename_not_exists_error`), no user (`invalid_param`)",
    413: "Larger than the app takes (`file_too_large`)",
    415: "A type the app does not take, or content that is not what its name says "
    "(`unsupported_file_type`)",
}


def _file_routes() -> dict[str, type[APIView]]:
    """Uploads and their preview (apps.interface.file_apis)."""
    upload_errors = responses({201: ref("FileUpload")}, (401, 403, 406, 429))
    upload_errors.update(
        {
            status: OpenApiResponse(ref(ERROR), description=text)
            for status, text in UPLOAD_ERRORS.items()
        }
    )
    upload = _stand_in(
        "file_upload",
        "post",
        operation_id="file_upload",
        request={"multipart/form-data": UPLOAD_FORM},
        responses=upload_errors,
    )
    preview = _stand_in(
        "file_preview",
        "get",
        operation_id="file_preview",
        parameters=[
            OpenApiParameter("file_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
            USER_QUERY,
            OpenApiParameter("as_attachment", bool, required=False),
        ],
        responses=responses(
            {(200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")},
            (*READ_ERRORS, 404),
        ),
    )
    return {"files-upload": upload, "file-preview": preview}


def _app_routes() -> dict[str, type[APIView]]:
    """Suggested questions, feedback, site and end users (apps.interface.app_apis)."""
    suggested = _stand_in(
        "message_suggested",
        "get",
        operation_id="message_suggested",
        parameters=[USER_QUERY],
        responses=responses({200: ref("SuggestedQuestions")}, (*READ_ERRORS, 404, 504)),
    )
    feedbacks = _stand_in(
        "app_feedbacks",
        "get",
        operation_id="app_feedbacks",
        parameters=[
            OpenApiParameter("page", int, required=False, description="From 1; default 1."),
            OpenApiParameter("limit", int, required=False, description="1 to 101; default 20."),
        ],
        responses=responses({200: ref("AppFeedbacks")}, READ_ERRORS),
    )
    site = _stand_in(
        "site", "get", operation_id="site", responses=responses({200: ref("Site")}, READ_ERRORS)
    )
    end_user = _stand_in(
        "end_user",
        "get",
        operation_id="end_user",
        responses=responses({200: ref("EndUser")}, (*READ_ERRORS, 404)),
    )
    return {
        "suggested": suggested,
        "app-feedbacks": feedbacks,
        "site": site,
        "end-user": end_user,
    }


def _answer_routes() -> dict[str, type[APIView]]:
    answer = {
        (200, "application/json"): ref(BLOCKING_ANSWER),
        (200, "application/xml"): ref(BLOCKING_ANSWER),
        (200, "text/event-stream"): SSE_STREAM,
    }
    chat = _answer_stand_in(
        "chat_message", ChatRequestSerializer, answer, "A chat answer. " + ANSWER_TEXT
    )
    completion = _answer_stand_in(
        "completion_message",
        CompletionRequestSerializer,
        answer,
        "A completion. " + ANSWER_TEXT + " Apps may answer blocking completions from a cache.",
    )
    ask = _answer_stand_in(
        "ask",
        AskRequestSerializer,
        {(200, "application/json"): ref(ASK_ANSWER), (200, "application/xml"): ref(ASK_ANSWER)},
        "(ext) The simplest call: one turn on any app, the moderated answer as `response`.",
    )
    return {
        "chat-messages": chat,
        "completion-messages": completion,
        "ask": ask,
        "chat-stop": _stop("chat"),
        "completion-stop": _stop("completion"),
        "chat-events": _events("chat"),
        "completion-events": _events("completion"),
    }


def documented_patterns() -> list[URLPattern]:
    """What the document describes: every route of the API (apps.interface.routes), each by
    its schema-only view; a route without one is an error here, not a gap in the document."""
    documented = {
        **_answer_routes(),
        **_conversation_routes(),
        **_file_routes(),
        **_app_routes(),
        **openai_documented(_stand_in_methods),
    }
    return [path(route.path, documented[route.name].as_view()) for route in API_ROUTES]


def add_response_components(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: the response schemas the operations refer to."""
    add_components(result)
    schemas = result["components"]["schemas"]
    for name, schema in OPENAI_COMPONENTS.items():
        schemas.setdefault(name, schema)
    return result
