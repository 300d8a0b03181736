from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from apps.orgs.models import ApiToken, Membership, Organization, Team


def orgs_for_user(*, user) -> QuerySet[Organization]:
    if not user.is_authenticated:
        return Organization.objects.none()
    return Organization.objects.filter(pk__in=Membership.objects.filter(user=user).values("org_id")).order_by(
        "name"
    )


def membership_for(*, user, org_slug: str | None) -> Membership | None:
    if not org_slug or not user.is_authenticated:
        return None
    return Membership.objects.select_related("org").filter(user=user, org__slug=org_slug).first()


def team_list(*, org) -> QuerySet[Team]:
    return Team.objects.for_org(org).order_by("name")


def member_list(*, org) -> QuerySet[Membership]:
    return Membership.objects.for_org(org).select_related("user").order_by("user__email")


def api_token_list(*, org) -> QuerySet[ApiToken]:
    return ApiToken.objects.for_org(org).select_related("team", "created_by").order_by("-created_at")


def user_by_email(email: str):
    return get_user_model().objects.filter(email__iexact=email.strip()).first()


def api_token_usable(*, token_hash: str) -> ApiToken | None:
    """The usable token with this hash (not revoked or expired, its creator an active member), with org, team and
    creator: one indexed SELECT."""
    return (
        ApiToken.objects.usable()
        .select_related("org", "team", "created_by")
        .filter(token_hash=token_hash)
        .first()
    )
