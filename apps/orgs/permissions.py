"""Who may do what. Roles (people in the web UI) map to capabilities; tokens (the API) carry scopes."""

from rest_framework.permissions import BasePermission

OWNER, ADMIN, FINANCE, MEMBER = "owner", "admin", "finance", "member"
ROLES = [
    (OWNER, "Owner"),
    (ADMIN, "Admin"),
    (FINANCE, "Finance"),
    (MEMBER, "Member (read-only)"),
]

# Capabilities per role (Sentry's scope_map idea). "view" is every member's; the rest are granted explicitly.
ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    OWNER: frozenset(
        {"view", "manage_spend", "manage_settings", "manage_tokens", "manage_members", "manage_owners"}
    ),
    ADMIN: frozenset({"view", "manage_spend", "manage_settings", "manage_tokens", "manage_members"}),
    FINANCE: frozenset({"view", "manage_spend"}),
    MEMBER: frozenset({"view"}),
}
ALL_CAPABILITIES = frozenset().union(*ROLE_CAPABILITIES.values())


def role_can(role: str, capability: str) -> bool:
    return capability in ROLE_CAPABILITIES.get(role, frozenset())


SCOPE_READ, SCOPE_INGEST, SCOPE_CHECK, SCOPE_ADMIN = "read", "ingest", "check", "admin"
TOKEN_SCOPES = [
    (SCOPE_READ, "Read spend, budgets and settings"),
    (SCOPE_INGEST, "Push usage events"),
    (SCOPE_CHECK, "Ask the pre-flight check"),
    (SCOPE_ADMIN, "Change settings, teams and tokens (implies every other scope)"),
]
SCOPE_VALUES = [s for s, _ in TOKEN_SCOPES]


def token_has_scope(scopes, required: str) -> bool:
    return SCOPE_ADMIN in scopes or required in scopes


class HasOrgScope(BasePermission):
    """Authenticated by an org token, and the token carries the scope the view asks for."""

    message = "This token does not have the scope this request needs."

    def has_permission(self, request, view):
        token = getattr(request, "api_token", None)
        if token is None or getattr(request, "org", None) is None:
            return False
        required = view.required_scope() if hasattr(view, "required_scope") else SCOPE_READ
        if not token_has_scope(token.scopes, required):
            self.message = f"This token lacks the '{required}' scope."
            return False
        return True
