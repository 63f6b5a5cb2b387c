from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "metrics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from metrics import tally
        from sessions_app import engine

        engine.error_listeners.append(tally.engine_error)
