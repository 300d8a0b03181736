"""The cyclic collector is paused around an ingest (its batch holds no cycles) and put back as it was after."""

import gc
import weakref

import pytest

from apps.usage import events as usage_events
from spendctl.common.gc import gc_paused
from tests.usage.factories import event, ingest


@pytest.fixture
def gc_enabled():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.enable() if was else gc.disable()


def test_paused_inside_and_restored_after_even_on_an_error(gc_enabled):
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: still paused, and the outer block keeps it paused after the inner one
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off(gc_enabled):
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_cycles_made_while_paused_are_collected_after(gc_enabled):
    class Node:
        pass

    with gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a
        refs = [weakref.ref(a), weakref.ref(b)]
        del a, b
        assert all(ref() is not None for ref in refs)  # a cycle: reference counting alone does not free it
    gc.collect()
    assert all(ref() is None for ref in refs)


@pytest.mark.django_db
def test_an_ingest_runs_with_the_collector_paused(org, monkeypatch, gc_enabled):
    seen = []
    validate = usage_events.validate_event

    def spying(raw, *, now):
        seen.append(gc.isenabled())
        return validate(raw, now=now)

    monkeypatch.setattr("apps.usage.services.validate_event", spying)
    result = ingest(org, [event(1), event(2)])
    assert result.accepted == 2
    assert seen == [False, False]
    assert gc.isenabled()


@pytest.mark.django_db
def test_the_events_api_parses_the_body_with_the_collector_paused(org, api, monkeypatch, gc_enabled):
    from rest_framework.parsers import JSONParser

    seen = []
    parse = JSONParser.parse

    def spying(self, *args, **kwargs):
        seen.append(gc.isenabled())
        return parse(self, *args, **kwargs)

    monkeypatch.setattr(JSONParser, "parse", spying)
    response = api(org, scopes=["ingest"]).post("/api/v1/events", {"events": [event(1)]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    assert seen == [False]
    assert gc.isenabled()
