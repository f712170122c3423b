"""Lease owner names: a fan-out run's syncs carry their run in the name (``family_owner``), so a
second delivery of one message recognises a lease held by the same run (``lease_family``)."""

from __future__ import annotations

from syncengine.tables.status import family_owner, lease_family


def test_family_owner_without_a_fanout_run_is_the_run_id() -> None:
    assert family_owner(None, "1db41b0f4f204d99") == "1db41b0f4f204d99"
    assert lease_family("1db41b0f4f204d99") is None


def test_family_owner_names_its_fanout_run() -> None:
    owner = family_owner("c67a90ff30604f80", "1db41b0f4f204d99")
    assert lease_family(owner) == "c67a90ff30604f80"
    assert lease_family(family_owner("c67a90ff30604f80", "650420898e4b4339")) == lease_family(owner)


def test_lease_family_of_another_tool_owner_is_none() -> None:
    assert lease_family(".leading-dot") is None
    assert lease_family("") is None
