"""The errors of file storage and uploads, in Dify's envelope (codes from Dify's document)."""

from apps.core.errors import ApiError, InvalidParam, NotFound


class FileNotFound(NotFound):
    """An unknown id, a malformed one, or another app's or end user's file: all the same."""

    code = "file_not_found"
    default_message = "File Not Exists."


class FileTooLarge(ApiError):
    status = 413
    code = "file_too_large"
    default_message = "The file is too large."


class FileQuotaExceeded(ApiError):
    """The app, or the end user, keeps as many files (or bytes) as it may."""

    status = 403
    code = "file_quota_exceeded"
    default_message = "The storage quota for files is used up."


class UnsupportedFileType(ApiError):
    status = 415
    code = "unsupported_file_type"
    default_message = "File type not allowed."


class NoFileUploaded(ApiError):
    status = 400
    code = "no_file_uploaded"
    default_message = "Please upload your file."


class TooManyFiles(ApiError):
    status = 400
    code = "too_many_files"
    default_message = "Only one file is allowed."


class FilenameMissing(ApiError):
    status = 400
    code = "filename_not_exists_error"
    default_message = "The specified filename does not exist."


class FileUnreadable(InvalidParam):
    """A stored file whose content cannot be used as what it claims to be (a broken PDF)."""


class FileContentMissing(Exception):
    """The backend holds less content than the file's row records (deleted while read, or the
    storage lost it): never served as if it were the whole file."""
