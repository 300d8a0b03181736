"""Exception reports (mail_admins, error trackers fed by Django's reporter) never carry a secret.

Django's SafeExceptionReporterFilter hides settings and request headers whose names look secret, POST fields named
by @sensitive_post_parameters, and frame variables named by @sensitive_variables (spendctl marks every function that
holds a provider key or a token, and everything below it). Two holes remain for an API: a DRF serializer's repr
prints its whole input (`data={'api_key': …}`), and plain dicts in frames (validated data, headers) print their
values. This filter closes both, in production (DEBUG off) like the base filter.
"""

from django.views.debug import SafeExceptionReporterFilter
from rest_framework.serializers import BaseSerializer


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    def cleanse_special_types(self, request, value):
        value = super().cleanse_special_types(request, value)
        if not self.is_active(request):
            return value
        if isinstance(value, BaseSerializer):
            return f"<{type(value).__name__}: input hidden>"
        if isinstance(value, dict):
            # keys that look secret (api_key, token, secret, password, authorization, x-api-key …) are starred
            return self.cleanse_setting("", value)
        return value
