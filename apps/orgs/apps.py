from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "apps.orgs"
    label = "orgs"
    verbose_name = "Organisations"

    def ready(self):
        from apps.orgs import versions

        versions.connect_signals()
