from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "apps.scheduling"
    label = "scheduling"

    def ready(self) -> None:
        from apps.scheduling.tasks.builtin_kinds import register_builtin_kinds

        register_builtin_kinds()
