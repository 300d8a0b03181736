import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from apps.orgs import services
from apps.orgs.models import Membership
from spendctl.common.exceptions import Conflict, PermissionDenied
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_org_create_makes_the_owner_and_a_free_slug():
    owner = UserFactory()
    first = services.org_create(name="Acme Corp", owner=owner)
    second = services.org_create(name="Acme Corp", owner=owner)
    assert (first.slug, second.slug) == ("acme-corp", "acme-corp-2")
    assert Membership.objects.get(org=first, user=owner).role == "owner"


def test_org_create_rejects_a_taken_or_bad_slug_and_bad_timezone():
    owner = UserFactory()
    services.org_create(name="Acme", slug="acme", owner=owner)
    with pytest.raises(ValidationError) as taken:
        services.org_create(name="Acme 2", slug="acme", owner=owner)
    assert "slug" in taken.value.message_dict
    with pytest.raises(ValidationError) as bad:
        services.org_create(name="X", slug="Not A Slug!", owner=owner)
    assert "slug" in bad.value.message_dict
    with pytest.raises(ValidationError) as tz:
        services.org_create(name="Y", owner=owner, timezone_name="Mars/Olympus")
    assert "timezone" in tz.value.message_dict


def test_a_user_can_belong_to_several_orgs():
    user = UserFactory()
    a = services.org_create(name="A", owner=user)
    b = services.org_create(name="B", owner=UserFactory())
    MembershipFactory(org=b, user=user, role="finance")
    assert set(user.memberships.values_list("org__slug", "role")) == {(a.slug, "owner"), (b.slug, "finance")}


def test_invite_new_user_sends_a_set_password_link(org, member_of, django_capture_on_commit_callbacks):
    admin = member_of(org, "admin")
    with django_capture_on_commit_callbacks(execute=True):
        membership = services.membership_invite(
            org=org, email="New.Person@Example.test", role="finance", invited_by=admin
        )
    assert membership.role == "finance" and membership.user.email == "new.person@example.test"
    assert not membership.user.has_usable_password()
    assert len(mail.outbox) == 1
    assert "/accounts/password/reset/" in mail.outbox[0].body and org.name in mail.outbox[0].subject


def test_invite_rules(org, member_of):
    admin = member_of(org, "admin")
    with pytest.raises(PermissionDenied):
        services.membership_invite(org=org, email="boss@example.test", role="owner", invited_by=admin)
    services.membership_invite(org=org, email="twice@example.test", role="member", invited_by=admin)
    with pytest.raises(ValidationError):
        services.membership_invite(org=org, email="TWICE@example.test", role="member", invited_by=admin)
    with pytest.raises(ValidationError):
        services.membership_invite(org=org, email="x@example.test", role="emperor", invited_by=admin)


def test_the_last_owner_cannot_be_demoted_or_removed(org, member_of):
    owner = member_of(org, "owner")
    owner_m = Membership.objects.get(org=org, user=owner)
    with pytest.raises(Conflict):
        services.membership_role_set(membership=owner_m, role="admin", actor=owner_m)
    with pytest.raises(Conflict):
        services.membership_remove(membership=owner_m, actor=owner_m)
    second = Membership.objects.get(org=org, user=member_of(org, "owner"))
    services.membership_role_set(membership=owner_m, role="admin", actor=second)
    owner_m.refresh_from_db()
    assert owner_m.role == "admin"


def test_admins_cannot_touch_owners(org, member_of):
    owner_m = Membership.objects.get(org=org, user=member_of(org, "owner"))
    admin_m = Membership.objects.get(org=org, user=member_of(org, "admin"))
    member_m = Membership.objects.get(org=org, user=member_of(org, "member"))
    with pytest.raises(PermissionDenied):
        services.membership_role_set(membership=owner_m, role="member", actor=admin_m)
    with pytest.raises(PermissionDenied):
        services.membership_role_set(membership=member_m, role="owner", actor=admin_m)
    with pytest.raises(PermissionDenied):
        services.membership_remove(membership=owner_m, actor=admin_m)
    services.membership_role_set(membership=member_m, role="finance", actor=admin_m)
    services.membership_remove(membership=member_m, actor=admin_m)
    assert not Membership.objects.filter(pk=member_m.pk).exists()
