from typing import Any

from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "apps.deployments"
    label = "deployments"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.applications.config_cache import config_changed
        from apps.deployments.models import AppDeployment, Deployment

        def changed(**_: Any) -> None:
            config_changed()

        def capacity_changed(instance: Deployment, **_: Any) -> None:
            from apps.deployments.scheduling import deployment_capacity_publish

            deployment_capacity_publish(instance)

        # Apps' routes are cached with the config version (apps.deployments.selectors).
        for model in (Deployment, AppDeployment):
            post_save.connect(
                changed, sender=model, weak=False, dispatch_uid=f"config-{model.__name__}"
            )
            post_delete.connect(
                changed, sender=model, weak=False, dispatch_uid=f"config-del-{model.__name__}"
            )
        post_save.connect(
            capacity_changed, sender=Deployment, weak=False, dispatch_uid="deployment-capacity"
        )
