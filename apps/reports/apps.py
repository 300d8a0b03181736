from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "apps.reports"
    label = "reports"
    verbose_name = "Monthly reports"

    def ready(self):
        from apps.reports import sections

        sections.register_builtin()
