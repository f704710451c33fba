"""An app's file settings: contradictions refused when saved (files the model could never
take), the admin shows them, and stored files are listed for the operator."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from apps.applications.file_rules import FileRules
from apps.applications.models import App
from apps.core.file_formats import FORMATS
from apps.deployments.models import Deployment, ProviderKind
from apps.files.models import FilePurpose
from apps.files.services import file_store
from tests.factories import make_app

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"file_upload_enabled": True, "file_upload_images": True}, "file_upload_images"),
        (
            {
                "file_upload_enabled": True,
                "file_upload_images": False,
                "file_upload_documents": False,
            },
            "file_upload_documents",
        ),
        (
            {"file_upload_enabled": True, "file_upload_local": False, "file_upload_remote": False},
            "file_upload_local",
        ),
        ({"file_upload_images": False, "file_upload_extensions": ".png"}, "file_upload_extensions"),
        ({"file_upload_extensions": ".exe"}, "file_upload_extensions"),
    ],
)
def test_settings_the_model_could_never_honour_are_refused(
    fields: dict[str, object], field: str
) -> None:
    app = App(name="x", **fields)
    with pytest.raises(ValidationError) as refused:
        app.full_clean()
    assert field in refused.value.message_dict


def test_the_built_in_model_never_claims_to_read_images() -> None:
    deployment = Deployment(name="x", provider=ProviderKind.LOCAL, model="m", vision=True)
    with pytest.raises(ValidationError) as refused:
        deployment.full_clean()
    assert "vision" in refused.value.message_dict


def test_consistent_settings_pass_and_are_the_files_taken() -> None:
    app = App(
        name="x",
        vision_enabled=True,
        file_upload_enabled=True,
        file_upload_extensions=".png, jpeg .PDF",
    )
    app.full_clean()
    # However the list was written, it names the formats the app takes, and only those.
    rules = FileRules.of(app)
    assert rules.enabled
    assert [extension for extension in FORMATS if rules.takes(FORMATS[extension])] == [
        extension for extension in FORMATS if extension in {".png", ".jpg", ".jpeg", ".pdf"}
    ]


def test_the_admin_shows_the_files_settings_and_the_stored_files(admin_client: Client) -> None:
    app = make_app()
    page = admin_client.get(reverse("admin:applications_app_change", args=[app.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for label in ("Files and vision", "Web app presentation", "suggested_questions_after_answer"):
        assert label in html
    stored = file_store(
        app=app,
        end_user="u1",
        purpose=FilePurpose.UPLOAD,
        filename="notes.txt",
        mime_type="text/plain",
        chunks=[b"hello"],
        max_bytes=10,
    )
    listing = admin_client.get(reverse("admin:files_storedfile_changelist"))
    assert "notes.txt" in listing.content.decode()
    detail = admin_client.get(reverse("admin:files_storedfile_change", args=[stored.pk]))
    assert detail.status_code == 200
