"""`Authorization: Bearer spc_…` for the REST API. The token fixes the org: request.org and request.api_token."""

from datetime import timedelta

from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from spendctl.common.crypto import hash_token

LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    @method_decorator(sensitive_variables())
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Send the token as 'Authorization: Bearer <token>'.")
        from apps.orgs.models import ApiToken  # late: DRF imports this module while the models load

        token = (
            ApiToken.objects.usable()
            .select_related("org", "team", "created_by")
            .filter(token_hash=hash_token(parts[1]))
            .first()
        )
        if token is None:
            # Unknown, revoked and expired tokens look the same from outside.
            raise exceptions.AuthenticationFailed("The token is unknown, revoked or expired.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        request._request.org = token.org
        request._request.api_token = token
        return token.created_by, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents the token scheme in the OpenAPI schema."""

    target_class = "apps.orgs.authentication.ApiTokenAuthentication"
    name = "BearerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An org API token: `Bearer spc_…`."}
