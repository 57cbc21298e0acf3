from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "registry.tenancy"
    label = "tenancy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from registry.tenancy import schema, signals  # noqa: F401  (cache invalidation, auth in the schema)
