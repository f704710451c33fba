from typing import Any

from django.apps import AppConfig


class ApplicationsConfig(AppConfig):
    name = "apps.applications"
    label = "applications"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.applications.config_cache import config_changed
        from apps.applications.models import ApiKey, App

        def changed(**_: Any) -> None:
            config_changed()

        # weak=False: the receiver is a closure that nothing else keeps alive.
        for model in (App, ApiKey):
            post_save.connect(
                changed, sender=model, weak=False, dispatch_uid=f"config-{model.__name__}"
            )
            post_delete.connect(
                changed, sender=model, weak=False, dispatch_uid=f"config-del-{model.__name__}"
            )
