from django.apps import AppConfig


class ContextWindowConfig(AppConfig):
    name = "inference.context_window"
    label = "context_window"
    default_auto_field = "django.db.models.BigAutoField"
