"""syncengine.tables.cache: the conditions that keep reconciliation from deleting someone else's record."""

from __future__ import annotations

from syncengine.core.models import Scope
from syncengine.tables.cache import CachedEntry, _unchanged_condition

SCOPE = Scope("123456789012", "us-east-1")


def test_store_stale_delete_holds_only_for_the_observation_it_judged() -> None:
    condition = _unchanged_condition(SCOPE, CachedEntry("s-0123456789abcdef0", "i-0123456789abcdef0", "h", 42))
    assert condition["ConditionExpression"] == "#scope = :scope AND #obs = :obs"
    assert condition["ExpressionAttributeValues"] == {":scope": {"S": SCOPE.key}, ":obs": {"N": "42"}}


def test_store_stale_delete_of_a_record_without_observation_requires_none_yet() -> None:
    """A record written before observation times were kept: any rewrite since adds one."""
    condition = _unchanged_condition(SCOPE, CachedEntry("s-0123456789abcdef0", "i-0123456789abcdef0", "h", 0))
    assert condition["ConditionExpression"] == "#scope = :scope AND attribute_not_exists(#obs)"
    assert ":obs" not in condition["ExpressionAttributeValues"]
