from apps.orgs.selectors import orgs_for_user

NAV = [
    ("dashboard", "Dashboard", ""),
    ("usage", "Usage", "usage/"),
    ("budgets", "Budgets", "budgets/"),
    ("connectors", "Connectors", "connectors/"),
    ("recommendations", "Recommendations", "recommendations/"),
    ("plans", "Plans", "plans/"),
    ("reports", "Reports", "reports/"),
    ("settings", "Settings", "settings/"),
]


def orgs(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    context = {"my_orgs": orgs_for_user(user=user), "nav_items": NAV}
    if getattr(request, "org", None) is not None:  # set by OrgViewMixin; keeps the layout on error pages too
        context["org"] = request.org
    return context
