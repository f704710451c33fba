from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "apps.operations"
    label = "operations"

    def ready(self) -> None:
        from apps.operations.chores import operations_chores_register

        operations_chores_register()
