from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "apps.conversations"
    label = "conversations"

    def ready(self) -> None:
        from apps.conversations.naming import NAMING_TASK_KIND
        from apps.scheduling.kinds import register_task_kind

        register_task_kind(NAMING_TASK_KIND)
