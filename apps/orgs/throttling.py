from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    """One budget of requests per token (per client address for unauthenticated calls)."""

    scope = "token"

    def get_cache_key(self, request, view):
        token = getattr(request, "api_token", None)
        ident = f"t{token.pk}" if token is not None else f"ip{self.get_ident(request)}"
        return self.cache_format % {"scope": getattr(view, "throttle_scope", self.scope), "ident": ident}
