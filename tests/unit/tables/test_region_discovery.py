"""Where DRS is in use in an account without ``regions``: the probe, its staleness and what a
sync plans from it (syncengine.tables.region_discovery), with AWS and DynamoDB faked."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from typing import Any

import pytest

from syncengine.core.config import SyncSettings
from syncengine.core.errors import AccessDeniedError, AwsError
from syncengine.core.models import AccountTarget
from syncengine.dynamodb.seam import from_item, to_item
from syncengine.tables.accounts import load_targets, plan_scopes
from syncengine.tables.region_discovery import (
    KnownRegions,
    is_stale,
    probe_account,
    probe_spread,
    regions_in_use,
    with_regions_in_use,
)
from syncengine.tables.status import AccountRegions

ACCOUNT = "444455556666"
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1", "af-south-1")
SETTINGS = SyncSettings(regions=REGIONS, tables=dataclasses.replace(SyncSettings().tables, target_accounts="accounts"))
TARGET = AccountTarget(ACCOUNT, role_arn=f"arn:aws:iam::{ACCOUNT}:role/DRSOrchestrationRole")


class FakeAws:
    """DRS answers per region: "ok", or an error code; calls counted per region."""

    def __init__(self, answers: dict[str, str], *, denied: bool = False):
        self.answers, self.denied, self.calls = answers, denied, Counter[str]()

    async def credentials_for(self, account: AccountTarget) -> None:
        if self.denied:
            raise AccessDeniedError("cannot assume", code="AccessDenied", operation="AssumeRole")

    async def client(self, service: str, region: str, account: AccountTarget | None = None) -> str:
        return region

    async def release(self, services: tuple[str, ...], region: str, account: AccountTarget | None = None) -> None:
        pass

    async def call(self, client: str, method: str, context: Any, **params: Any) -> dict[str, Any]:
        assert method == "describe_source_servers" and params == {"filters": {}, "maxResults": 1}
        self.calls[client] += 1
        answer = self.answers.get(client, "ok")
        if answer != "ok":
            raise AwsError(answer, code=answer, operation=context.operation, region=client)
        return {"items": []}

    async def current_account_id(self) -> str:
        return "111122223333"


class FakeEnabled:
    """EC2 DescribeRegions' answer: the enabled opt-in regions, or None (it did not answer)."""

    def __init__(self, opt_in_enabled: set[str] | None):
        self.opt_in_enabled = opt_in_enabled

    async def is_enabled(self, account: AccountTarget, region: str) -> bool | None:
        return self.listed(account.account_id, region)

    def listed(self, account_id: str, region: str) -> bool | None:
        if region != "af-south-1":
            return True
        return None if self.opt_in_enabled is None else region in self.opt_in_enabled


async def _probe(aws: FakeAws, enabled: FakeEnabled, cached: frozenset[str] = frozenset()) -> AccountRegions | None:
    return await probe_account(aws, enabled, TARGET, REGIONS, cached)  # type: ignore[arg-type]


async def test_probe_asks_each_enabled_region_once_and_keeps_where_drs_answers() -> None:
    aws = FakeAws({"eu-west-1": "UninitializedAccountException"})
    probe = await _probe(aws, FakeEnabled(set()))
    assert probe is not None
    assert probe.regions == ("ap-south-1", "us-east-1")
    assert probe.checked == tuple(sorted(REGIONS)) and probe.failed == ()
    # The disabled opt-in region costs no DRS call (DescribeRegions said so).
    assert aws.calls == Counter({"us-east-1": 1, "eu-west-1": 1, "ap-south-1": 1})


async def test_probe_skips_regions_holding_cached_instances() -> None:
    aws = FakeAws({"us-east-1": "UninitializedAccountException"})
    probe = await _probe(aws, FakeEnabled({"af-south-1"}), cached=frozenset({"us-east-1"}))
    assert probe is not None and "us-east-1" in probe.regions
    assert aws.calls["us-east-1"] == 0 and aws.calls["af-south-1"] == 1


async def test_probe_reads_a_disabled_region_from_its_auth_failure_without_describe_regions() -> None:
    aws = FakeAws({"af-south-1": "UnrecognizedClientException", "us-east-1": "UnrecognizedClientException"})
    probe = await _probe(aws, FakeEnabled(None))
    assert probe is not None
    # In an opt-in region it means "not enabled"; in an always-enabled one, a failure (kept).
    assert "af-south-1" not in probe.regions
    assert probe.failed == ("us-east-1",) and "us-east-1" in probe.regions


@pytest.mark.parametrize("code", ["AccessDeniedException", "InternalServerException", "ThrottlingException"])
async def test_a_failed_region_probe_keeps_the_region(code: str) -> None:
    probe = await _probe(
        FakeAws({"eu-west-1": code, "ap-south-1": "UninitializedAccountException"}), FakeEnabled(set())
    )
    assert probe is not None
    assert probe.regions == ("eu-west-1", "us-east-1") and probe.failed == ("eu-west-1",)


async def test_a_probe_that_learned_nothing_is_none() -> None:
    assert await _probe(FakeAws({}, denied=True), FakeEnabled(set())) is None
    every_region_failed = FakeAws(dict.fromkeys(REGIONS, "InternalServerException"))
    assert await _probe(every_region_failed, FakeEnabled({"af-south-1"})) is None


def test_a_probe_is_stale_after_the_interval_or_when_a_region_was_configured_since() -> None:
    now = time.time()
    fresh = AccountRegions(ACCOUNT, ("us-east-1",), REGIONS, (), now - 60)
    assert is_stale(None, REGIONS, SETTINGS, now)
    assert not is_stale(fresh, REGIONS, SETTINGS, now)
    assert is_stale(dataclasses.replace(fresh, checked_at=now - 3600), REGIONS, SETTINGS, now)
    assert not is_stale(fresh, REGIONS, SETTINGS.with_changes(region_probe_seconds=7200), now - 3000)
    assert is_stale(fresh, (*REGIONS, "eu-north-1"), SETTINGS, now)


def test_probes_go_stale_spread_over_the_second_half_of_the_interval_fixed_per_account() -> None:
    """Accounts first probed by one sync are probed again over the next half interval, not all
    by one sync an hour later; an account's own spread never changes."""
    accounts = [f"{n:012d}" for n in range(200)]
    spreads = [probe_spread(a, SETTINGS) for a in accounts]
    assert all(0 <= s < SETTINGS.region_probe_seconds / 2 for s in spreads)
    assert max(spreads) - min(spreads) > SETTINGS.region_probe_seconds / 3
    assert probe_spread(accounts[7], SETTINGS) == spreads[7]
    now = time.time()
    for account, spread in zip(accounts[:20], spreads, strict=False):
        probe = AccountRegions(account, ("us-east-1",), REGIONS, (), now)
        assert is_stale(probe, REGIONS, SETTINGS, now + SETTINGS.region_probe_seconds - spread + 0.01)
        assert not is_stale(probe, REGIONS, SETTINGS, now + SETTINGS.region_probe_seconds - spread - 1)


def test_regions_in_use_keeps_cached_and_unasked_regions() -> None:
    probe = AccountRegions(ACCOUNT, ("eu-west-1",), ("us-east-1", "eu-west-1", "ap-south-1"), (), 0)
    assert regions_in_use(probe, REGIONS, frozenset({"ap-south-1"})) == ("af-south-1", "ap-south-1", "eu-west-1")
    assert regions_in_use(dataclasses.replace(probe, regions=()), ("us-east-1",), frozenset()) == ()


async def test_an_account_found_using_no_region_plans_no_scope() -> None:
    known = KnownRegions({ACCOUNT: AccountRegions(ACCOUNT, (), REGIONS, (), time.time())}, {})
    targets = await with_regions_in_use(None, None, SETTINGS, [TARGET], known, probe_with=None)  # type: ignore[arg-type]
    assert targets[0].regions_found and plan_scopes(targets, SETTINGS) == []


async def test_an_item_with_regions_or_a_config_error_is_never_narrowed_nor_probed() -> None:
    aws = FakeAws({})
    named = dataclasses.replace(TARGET, regions=("eu-west-1",))
    broken = dataclasses.replace(TARGET, account_id="777788889999", config_error="regions must be a list")
    targets = await with_regions_in_use(
        aws,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        SETTINGS,
        [named, broken],
        KnownRegions({}, {}),
        probe_with=FakeEnabled(set()),  # type: ignore[arg-type]
    )
    assert targets == [named, broken] and not aws.calls


class Tables:
    """The target-accounts table and the status table's REGIONS and SCOPE partitions, in memory."""

    def __init__(self, probes: list[AccountRegions] = (), scopes: list[dict] = (), *, unreadable: bool = False):
        self.items = {(p_["pk"], p_["sk"]): p_ for p_ in map(self._probe_item, probes)}
        self.scopes, self.unreadable = list(scopes), unreadable

    @staticmethod
    def _probe_item(probe: AccountRegions) -> dict:
        return {
            "pk": "REGIONS",
            "sk": probe.account_id,
            "regions": list(probe.regions),
            "checkedRegions": list(probe.checked),
            "checkedAt": int(probe.checked_at),
        }

    async def scan_all(self, table: str, **params: object) -> list[dict]:
        return [{"accountId": ACCOUNT, "roleArn": TARGET.role_arn}]

    async def paginate(self, method: str, **params: Any):
        if self.unreadable:
            raise AccessDeniedError("no", code="AccessDeniedException", operation="Query")
        pk = params["ExpressionAttributeValues"][":pk"]["S"]
        if pk == "SCOPE":
            for scope in self.scopes:
                yield to_item({"pk": "SCOPE", "sk": f"{scope['accountId']}#{scope['region']}", **scope})
        for (item_pk, _), item in sorted(self.items.items()):
            if item_pk == pk:
                yield to_item(item)

    async def batch_write(self, table: str, requests: list[dict]) -> None:
        assert len(requests) <= 25
        for request in requests:
            key = from_item(request["DeleteRequest"]["Key"])
            self.items.pop((key["pk"], key["sk"]))

    async def call(self, method: str, **params: Any) -> dict:
        assert method == "put_item"
        item = from_item(params["Item"])
        self.items[(item["pk"], item["sk"])] = item
        return {}


def _planned(targets: list[AccountTarget]) -> set[str]:
    return {scope.region for scope, _ in plan_scopes(targets, SETTINGS, account_id=ACCOUNT)}


async def test_load_targets_uses_the_stored_probe_and_cached_regions_without_probing() -> None:
    tables = Tables(
        [AccountRegions(ACCOUNT, ("eu-west-1",), REGIONS, (), 0)],  # stale, but nobody probes
        [{"accountId": ACCOUNT, "region": "ap-south-1", "instanceCount": 2}],
    )
    aws = FakeAws({})
    targets = await load_targets(aws, tables, SETTINGS)  # type: ignore[arg-type]
    assert _planned(targets) == {"eu-west-1", "ap-south-1"} and not aws.calls


async def test_load_targets_probes_a_stale_account_and_stores_it() -> None:
    tables = Tables([AccountRegions(ACCOUNT, ("eu-west-1",), REGIONS, (), time.time() - 3601)])
    aws = FakeAws({"eu-west-1": "UninitializedAccountException"})
    targets = await load_targets(aws, tables, SETTINGS, probe_with=FakeEnabled(set()))  # type: ignore[arg-type]
    assert _planned(targets) == {"us-east-1", "ap-south-1"}
    stored = tables.items[("REGIONS", ACCOUNT)]
    assert stored["regions"] == ["ap-south-1", "us-east-1"] and stored["checkedAt"] >= time.time() - 5


async def test_a_wave_synced_since_the_last_whole_scope_sync_keeps_its_region_until_reconciled() -> None:
    """A targeted sync (a wave, an event) after the scope's last whole-scope sync: DRS is in use
    there whatever the probe said; once a whole-scope sync follows, ``instanceCount`` decides."""
    tables = Tables(
        [AccountRegions(ACCOUNT, ("eu-west-1",), REGIONS, (), time.time())],
        [
            {"accountId": ACCOUNT, "region": "us-east-1", "lastTargetedTime": "2026-12-07T10:00:00Z"},
            {
                "accountId": ACCOUNT,
                "region": "ap-south-1",
                "lastSuccessTime": "2026-12-07T10:05:00Z",
                "lastTargetedTime": "2026-12-07T10:00:00Z",
            },
        ],
    )
    targets = await load_targets(FakeAws({}), tables, SETTINGS)  # type: ignore[arg-type]
    assert _planned(targets) == {"eu-west-1", "us-east-1"}


async def test_load_targets_with_unreadable_probes_syncs_every_configured_region() -> None:
    aws = FakeAws({})
    tables = Tables(unreadable=True)
    targets = await load_targets(aws, tables, SETTINGS, probe_with=FakeEnabled(set()))  # type: ignore[arg-type]
    assert _planned(targets) == set(REGIONS) and not aws.calls


async def test_load_targets_without_stored_probes_reads_none_and_plans_every_configured_region() -> None:
    """The refresh path: a fan-out message names scopes the sweep planned, an event a region
    where DRS is in use; two Queries a batch would buy nothing."""
    tables = Tables([AccountRegions(ACCOUNT, ("eu-west-1",), REGIONS, (), time.time())])
    targets = await load_targets(FakeAws({}), tables, SETTINGS, stored_probes=False)  # type: ignore[arg-type]
    assert _planned(targets) == set(REGIONS)


async def test_the_full_sync_deletes_the_probe_of_an_account_no_longer_configured() -> None:
    """A removed (or inactive) account's ``REGIONS`` row goes with the full sync that no longer
    finds it in the target-accounts table (in batches of 25 deletes); a sync that does not probe
    leaves the rows alone."""
    removed = [f"9999{n:08d}" for n in range(30)]
    probes = [AccountRegions(ACCOUNT, ("eu-west-1",), REGIONS, (), time.time())]
    probes += [AccountRegions(account, ("us-east-1",), REGIONS, (), time.time()) for account in removed]
    tables = Tables(probes)
    await load_targets(FakeAws({}), tables, SETTINGS)  # type: ignore[arg-type]
    assert len(tables.items) == 31

    kept = dict(tables.items[("REGIONS", ACCOUNT)])
    targets = await load_targets(FakeAws({}), tables, SETTINGS, probe_with=FakeEnabled(set()))  # type: ignore[arg-type]

    assert not {("REGIONS", account) for account in removed} & set(tables.items)
    # The listed account's fresh probe stands (and the hub's own account got its first one).
    assert tables.items[("REGIONS", ACCOUNT)] == kept and _planned(targets) == {"eu-west-1"}
