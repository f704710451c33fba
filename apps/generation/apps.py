from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "apps.generation"
    label = "generation"

    def ready(self) -> None:
        from apps.generation.answer import answer_run
        from apps.generation.provider_settings import provider_settings
        from apps.providers.registry import providers_configure

        providers_configure(provider_settings())
        from apps.generation.answer_end import answer_failed, answer_succeeded
        from apps.generation.naming import NAMING_TASK_KIND
        from apps.generation.requeue import answer_requeued
        from apps.generation.routing import model_task_route
        from apps.generation.suggestions import SUGGESTIONS_TASK_KIND
        from apps.scheduling.tasks.kinds import TaskKind, register_task_kind

        for kind in ("chat", "completion"):
            register_task_kind(
                TaskKind(
                    name=kind,
                    run=answer_run,
                    on_success=answer_succeeded,
                    on_final_failure=answer_failed,
                    on_requeue=answer_requeued,
                    route=model_task_route,
                )
            )
        register_task_kind(NAMING_TASK_KIND)
        register_task_kind(SUGGESTIONS_TASK_KIND)
