from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    name = "inference.runtime"
    label = "runtime"
    default_auto_field = "django.db.models.BigAutoField"
