from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "inference.workflows"
    label = "workflows"
    default_auto_field = "django.db.models.BigAutoField"
