"""Which accounts and regions a sync covers."""

from __future__ import annotations

import dataclasses

import anyio
import anyio.lowlevel
import pytest

from syncengine.aws.clients import drs_regions
from syncengine.core.config import SyncSettings
from syncengine.core.errors import InvalidRequestError
from syncengine.tables.accounts import (
    load_targets,
    plan_scopes,
    role_name_of,
    targets_from_items,
    validate_account_id,
    validate_region,
)

SETTINGS = SyncSettings(regions=("us-east-1", "eu-west-1"))


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param({"roleArn": "arn:aws:iam::111122223333:role/Custom"}, "Custom", id="role-arn"),
        pytest.param({"assumeRoleName": "Named"}, "Named", id="assume-role-name"),
        pytest.param({"crossAccountRoleArn": "arn:aws:iam::1:role/path/Cross"}, "Cross", id="cross-account-arn"),
        pytest.param({}, "DRSOrchestrationRole", id="default"),
    ],
)
def test_role_name_of_follows_precedence(item: dict, expected: str) -> None:
    """roleArn, then assumeRoleName, then crossAccountRoleArn, then the default."""
    assert role_name_of(item, "DRSOrchestrationRole") == expected


def test_targets_skip_inactive_and_malformed_accounts() -> None:
    """Only active items with 12-digit ids are synced; the current account is added."""
    items = [
        {"accountId": "111122223333", "status": "active", "externalId": "ext-1"},
        {"accountId": "222233334444", "status": "inactive"},
        {"accountId": "not-an-id", "status": "active"},
    ]
    targets = targets_from_items(items, SETTINGS, current_account_id="999988887777")
    assert [t.account_id for t in targets] == ["111122223333", "999988887777"]
    remote, current = targets
    assert remote.role_arn == "arn:aws:iam::111122223333:role/DRSOrchestrationRole"
    assert remote.external_id == "ext-1"
    assert current.role_arn is None and current.is_current_account


def test_targets_use_own_credentials_for_the_current_account_item() -> None:
    """An item marked isCurrentAccount is synced without AssumeRole."""
    items = [{"accountId": "999988887777", "isCurrentAccount": True, "roleArn": "arn:aws:iam::9:role/X"}]
    (target,) = targets_from_items(items, SETTINGS, current_account_id="999988887777")
    assert target.role_arn is None


def test_targets_ignore_is_current_account_for_another_account() -> None:
    """isCurrentAccount on an item of another account is not honoured: that account is assumed."""
    items = [{"accountId": "111122223333", "isCurrentAccount": True, "externalId": "ext-1"}]
    settings = SyncSettings(include_current_account=False)
    (target,) = targets_from_items(items, settings, current_account_id="999988887777")
    assert not target.is_current_account
    assert target.role_arn == "arn:aws:iam::111122223333:role/DRSOrchestrationRole"


def test_targets_ignore_is_current_account_when_the_caller_is_unknown() -> None:
    items = [{"accountId": "111122223333", "isCurrentAccount": True}]
    (target,) = targets_from_items(items, SyncSettings(include_current_account=False), current_account_id=None)
    assert target.role_arn is not None


def test_plan_scopes_uses_item_regions_then_configured_then_all() -> None:
    """Regions come from the item, else settings, else every DRS region."""
    items = [
        {"accountId": "111122223333", "regions": ["ap-southeast-2"]},
        {"accountId": "222233334444"},
    ]
    targets = targets_from_items(items, SETTINGS, current_account_id=None)
    scopes = plan_scopes(targets, SETTINGS)
    assert [s.key for s, _ in scopes] == [
        "111122223333#ap-southeast-2",
        "222233334444#us-east-1",
        "222233334444#eu-west-1",
    ]
    all_regions = plan_scopes(targets_from_items(items[1:], SyncSettings(), None), SyncSettings())
    assert {s.region for s, _ in all_regions} == set(drs_regions())


def test_plan_scopes_filters_by_account_and_region() -> None:
    """A scoped sync covers only the matching account/region."""
    targets = targets_from_items([{"accountId": "111122223333"}, {"accountId": "222233334444"}], SETTINGS, None)
    scopes = plan_scopes(targets, SETTINGS, account_id="222233334444", region="eu-west-1")
    assert [s.key for s, _ in scopes] == ["222233334444#eu-west-1"]


@pytest.mark.parametrize("bad", ["12345", "1234567890123", "abcdefghijkl", 123456789012, None])
def test_validate_account_id_rejects_malformed(bad: object) -> None:
    """Account ids are exactly 12 digits, as strings."""
    with pytest.raises(InvalidRequestError, match="12-digit"):
        validate_account_id(bad)


def test_validate_region_rejects_non_drs_regions() -> None:
    """A region where DRS does not exist is bad input."""
    assert validate_region("us-east-1") == "us-east-1"
    with pytest.raises(InvalidRequestError, match="DRS"):
        validate_region("mars-north-1")


@pytest.mark.parametrize(
    "bad",
    [pytest.param("123456789012\n", id="trailing-newline"), pytest.param("١٢٣٤٥٦٧٨٩٠١٢", id="arabic-indic-digits")],
)
def test_validate_account_id_accepts_only_ascii_digits(bad: str) -> None:
    """A trailing newline or non-ASCII digits are not an account id."""
    with pytest.raises(InvalidRequestError):
        validate_account_id(bad)


@pytest.mark.parametrize(
    ("raw", "regions", "error_words"),
    [
        pytest.param(["us-east-1", "eu-west-1"], ("us-east-1", "eu-west-1"), None, id="valid-list"),
        pytest.param(None, (), None, id="absent"),
        pytest.param("us-east-1", ("us-east-1",), "must be a list", id="string"),
        pytest.param(["us-east-1", "mars-north-1"], ("us-east-1",), "mars-north-1", id="unknown-region"),
        pytest.param(["us-east-1", 7], ("us-east-1",), "7", id="not-a-string"),
        pytest.param({"us-east-1": True}, (), "dict", id="map"),
    ],
)
def test_item_regions_validates_the_regions_attribute(raw, regions, error_words) -> None:
    """A valid list passes; anything else keeps the DRS regions it names and says what is wrong."""
    from syncengine.tables.accounts import item_regions

    named, error = item_regions(raw)
    assert named == regions
    assert (error is None) if error_words is None else (error_words in error)


def test_targets_carry_the_configuration_error_of_a_malformed_item() -> None:
    items = [{"accountId": "111122223333", "regions": "us-east-1"}, {"accountId": "222233334444"}]
    broken, fine = targets_from_items(items, SETTINGS, current_account_id=None)
    assert broken.config_error and "must be a list" in broken.config_error
    assert fine.config_error is None


@pytest.mark.parametrize(
    ("code", "region", "disabled"),
    [
        pytest.param("UnrecognizedClientException", "af-south-1", True, id="drs-opt-in"),
        pytest.param("AuthFailure", "me-south-1", True, id="ec2-opt-in"),
        pytest.param("UnrecognizedClientException", "us-east-1", False, id="always-enabled-region"),
        pytest.param("AccessDeniedException", "af-south-1", False, id="access-denied"),
        pytest.param("AccessDenied", "il-central-1", False, id="assume-role-denied"),
    ],
)
def test_is_disabled_region_error_only_for_auth_failures_in_opt_in_regions(code, region, disabled) -> None:
    """A disabled region is told apart from a broken role or a missing permission."""
    from syncengine.aws.regions import is_disabled_region_error
    from syncengine.core.errors import AccessDeniedError

    assert is_disabled_region_error(AccessDeniedError("x", code=code, operation="drs:X"), region) is disabled


def test_is_disabled_region_error_never_for_an_assume_role_failure() -> None:
    from syncengine.aws.regions import is_disabled_region_error
    from syncengine.core.errors import AccessDeniedError

    denied = AccessDeniedError("x", code="UnrecognizedClientException", operation="AssumeRole")
    assert not is_disabled_region_error(denied, "af-south-1")


def test_opt_in_regions_are_the_eleven_drs_regions_launched_since_2019() -> None:
    from syncengine.aws.regions import is_opt_in_region

    opt_in = {r for r in drs_regions() if is_opt_in_region(r)}
    assert len(opt_in) == len(drs_regions()) - 17
    assert {"af-south-1", "ap-east-1", "me-south-1", "il-central-1"} <= opt_in


class _IdentityAsked:
    """Stand-ins for the run's AWS and DynamoDB access: the scan notes whether STS was already
    asked for the caller's identity while the scan was still waiting for its answer."""

    def __init__(self) -> None:
        self.identity_asked = False
        self.asked_during_scan: bool | None = None

    async def current_account_id(self) -> str:
        self.identity_asked = True
        await anyio.lowlevel.checkpoint()
        return "111122223333"

    async def scan_all(self, table: str) -> list[dict]:
        await anyio.wait_all_tasks_blocked()
        self.asked_during_scan = self.identity_asked
        return [{"accountId": "444455556666"}]

    async def paginate(self, method: str, **params: object):  # the status table's Queries: empty
        for item in ():
            yield item


async def test_load_targets_asks_for_the_caller_identity_while_the_table_is_scanned() -> None:
    """Both are on every sync's critical path before its first scope: neither waits for the other."""
    fakes = _IdentityAsked()
    targets = await load_targets(fakes, fakes, SETTINGS)  # type: ignore[arg-type]
    assert fakes.asked_during_scan is True
    assert [(t.account_id, t.is_current_account) for t in targets] == [
        ("111122223333", True),
        ("444455556666", False),
    ]


class _RegionStatusTables:
    """The target-accounts table, the orchestration's region-status table and our status table's
    scope partition, in memory (``paginate`` serves the status Query)."""

    def __init__(self, rows: list[dict] | None, scopes: list[dict] | None = None, *, unreadable: bool = False):
        self.rows, self.scopes, self.unreadable = rows, scopes or [], unreadable

    async def current_account_id(self) -> str:
        return "111122223333"

    async def scan_all(self, table: str, **params: object) -> list[dict]:
        if table == "accounts":
            return [{"accountId": "444455556666", "roleArn": "arn:aws:iam::444455556666:role/DRSOrchestrationRole"}]
        if self.unreadable:
            from syncengine.core.errors import AccessDeniedError

            raise AccessDeniedError("no", code="AccessDeniedException", operation="Scan")
        # The FilterExpression (serverCount > 0) as DynamoDB applies it.
        return [r for r in self.rows or [] if r["serverCount"] > 0]

    async def paginate(self, method: str, **params: object):
        from syncengine.dynamodb.seam import to_item

        for scope in self.scopes:
            yield to_item({"pk": "SCOPE", "sk": f"{scope['accountId']}#{scope['region']}", **scope})


REGION_STATUS_SETTINGS = SyncSettings(
    regions=("us-east-1", "eu-west-1", "ap-south-1"),
    tables=dataclasses.replace(SyncSettings().tables, target_accounts="accounts"),
    drs_region_status_table="region-status",
)


async def test_load_targets_syncs_an_item_without_regions_where_the_region_status_table_lists_servers() -> None:
    """The orchestration's items list no regions: its region-status table's rows with
    ``serverCount > 0`` (its get_active_regions rule) decide, not every configured region."""
    tables = _RegionStatusTables([{"region": "eu-west-1", "serverCount": 4}, {"region": "us-east-1", "serverCount": 0}])
    targets = await load_targets(tables, tables, REGION_STATUS_SETTINGS)  # type: ignore[arg-type]
    regions = {t.account_id: t.regions for t in targets}
    assert regions == {"111122223333": ("eu-west-1",), "444455556666": ("eu-west-1",)}


async def test_load_targets_keeps_a_region_whose_scope_still_holds_instances() -> None:
    """The orchestration keys the table by region alone (the last account written decides): a
    region where this account's scope held instances at its last sync stays synced, so its
    records are never removed because another account has no servers there."""
    tables = _RegionStatusTables(
        [{"region": "eu-west-1", "serverCount": 4}],
        [{"accountId": "444455556666", "region": "us-east-1", "instanceCount": 3, "status": "SUCCESS"}],
    )
    targets = await load_targets(tables, tables, REGION_STATUS_SETTINGS)  # type: ignore[arg-type]
    assert {t.account_id: t.regions for t in targets}["444455556666"] == ("eu-west-1", "us-east-1")


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param(_RegionStatusTables([]), id="empty"),
        pytest.param(_RegionStatusTables([{"region": "eu-west-1", "serverCount": 0}]), id="no-servers"),
        pytest.param(_RegionStatusTables(None, unreadable=True), id="unreadable"),
    ],
)
async def test_load_targets_falls_back_to_the_configured_regions(tables: _RegionStatusTables) -> None:
    targets = await load_targets(tables, tables, REGION_STATUS_SETTINGS)  # type: ignore[arg-type]
    planned = {scope.region for scope, _ in plan_scopes(targets, REGION_STATUS_SETTINGS)}
    assert planned == {"us-east-1", "eu-west-1", "ap-south-1"}
