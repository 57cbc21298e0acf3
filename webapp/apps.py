from django.apps import AppConfig


class WebappConfig(AppConfig):
    name = "webapp"

    def ready(self) -> None:
        # Connects the failed-login counting to Django's login signals.
        from webapp import login_throttle  # noqa: F401
