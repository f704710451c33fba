"""Multipart forms (file uploads) for the async API views."""

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.utils.datastructures import MultiValueDict

from apps.core.errors import InvalidParam, RequestTooLarge
from apps.files.errors import NoFileUploaded, TooManyFiles


def _form(request: HttpRequest) -> tuple[QueryDict, MultiValueDict[str, UploadedFile]]:
    """The form's fields and files; the files larger than a few MB go to temporary files on
    disk as they are parsed, never wholly into memory."""
    if request.content_type != "multipart/form-data":
        raise NoFileUploaded("Send the file as multipart/form-data, in a part named `file`.")
    try:
        return request.POST, request.FILES  # type: ignore[return-value]
    except TooManyFilesSent:
        raise TooManyFiles() from None
    except (RequestDataTooBig, TooManyFieldsSent) as error:
        raise RequestTooLarge(f"The form is too large: {error}") from None
    except MultiPartParserError as error:
        raise InvalidParam(f"The upload is not valid multipart/form-data: {error}") from None


_parsed = sync_to_async(_form, thread_sensitive=False)


# Parsing reads the body (a temporary file beyond a few MB): off the event loop.
multipart_form = sync_to_async(_form, thread_sensitive=False)
