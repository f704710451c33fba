from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "apps.batches"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.batches.kinds import batch_chores_register, batch_kinds_register

        batch_kinds_register()
        batch_chores_register()
