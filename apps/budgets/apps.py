from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "apps.budgets"
    label = "budgets"
    verbose_name = "Budgets and alerts"

    def ready(self):
        from apps.budgets import signals

        signals.connect()
