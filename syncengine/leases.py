"""The status table's leases (the rest of that table is ``syncengine.status``, whose store
inherits these): the full-sync lease that keeps two full syncs apart, and the per-scope lease
(``leaseOwner``/``leaseExpiresAt`` on the scope's status item) that serialises syncs of one scope,
so the order of observations is the order of writes. A lease expires at its holder's deadline
plus a margin, never later, so a holder killed at its timeout cannot freeze a scope.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio

from syncengine.dynamo import Dynamo, from_item, to_item
from syncengine.errors import SyncInProgressError
from syncengine.logging import get_logger
from syncengine.models import Scope, utc_now_iso

log = get_logger(__name__)

SCOPE_PK = "SCOPE"
LEASE_PK = "LEASE"
FULL_SYNC_SK = "FULL_SYNC"
# When the scope's lease was taken (epoch ms) and whether its holder syncs the whole scope: a
# refresh that finds the scope busy learns whether the holder's read covers its event.
LEASE_ACQUIRED_AT = "leaseAcquiredAt"
LEASE_WHOLE_SCOPE = "leaseWholeScope"
_SCOPE_LEASE_NAMES = {
    "#owner": "leaseOwner",
    "#exp": "leaseExpiresAt",
    "#acct": "accountId",
    "#region": "region",
    "#acq": LEASE_ACQUIRED_AT,
    "#whole": LEASE_WHOLE_SCOPE,
}
# When the scope's records were last attributed (epoch seconds; see ``take_scope_lease``).
ATTRIBUTED_AT = "attributedAt"
# A fan-out worker's sync names its lease ``<fan-out run id>.<run id>`` (``family_owner``).
FAMILY_SEPARATOR = "."


def family_owner(family: str | None, run_id: str) -> str:
    """The lease owner name of a run: ``run_id``, prefixed by its fan-out run when it has one."""
    return f"{family}{FAMILY_SEPARATOR}{run_id}" if family else run_id


def lease_family(owner: str) -> str | None:
    """The fan-out run of a lease owner named by ``family_owner``, None for any other owner."""
    family, separator, _ = owner.rpartition(FAMILY_SEPARATOR)
    return family if separator and family else None


@dataclass(frozen=True)
class ScopeLease:
    """A granted scope lease, and what the scope's status item said before it was taken."""

    attributed_at: float | None = None


@dataclass(frozen=True)
class FullSyncLease:
    owner: str
    expires_at: float


@dataclass(frozen=True)
class ScopeLeaseHolder:
    """Who holds a scope's lease: its owner, since when (epoch ms; its reads of the scope start
    after it), and whether it syncs the whole scope (the sweep, a fan-out slice, a scope message)
    or only some servers (a wave, an event refresh)."""

    owner: str
    expires_at: float
    acquired_at_ms: int | None
    whole_scope: bool


class Leases:
    """Takes and frees the status table's leases; ``StatusStore`` is the one that has them."""

    dynamo: Dynamo
    table: str
    lease_seconds: float

    # -- the full-sync lease ---------------------------------------------------------------------

    async def acquire_full_sync_lease(self, owner: str, *, seconds: float | None = None) -> FullSyncLease:
        now = time.time()
        expires_at = now + (seconds or self.lease_seconds)
        written = await self.dynamo.write_if(
            "put_item",
            TableName=self.table,
            Item=to_item(
                {
                    "pk": LEASE_PK,
                    "sk": FULL_SYNC_SK,
                    "owner": owner,
                    "expiresAt": int(expires_at),
                    "acquiredAt": utc_now_iso(),
                    "ttl": int(expires_at) + 86400,
                }
            ),
            # Only one full sync at a time; a lease whose holder died expires on its own; and
            # our own lease again, when a retry follows an attempt whose answer was lost.
            ConditionExpression="attribute_not_exists(#pk) OR #exp < :now OR #owner = :owner",
            ExpressionAttributeNames={"#pk": "pk", "#exp": "expiresAt", "#owner": "owner"},
            ExpressionAttributeValues={":now": {"N": str(int(now))}, ":owner": {"S": owner}},
        )
        if written is None:
            holder = await self.full_sync_holder()
            raise SyncInProgressError(
                "A full sync is already running; try again when it finishes.",
                holder=holder.owner if holder else None,
                expires_at=holder.expires_at if holder else None,
            )
        return FullSyncLease(owner, expires_at)

    async def release_full_sync_lease(self, owner: str) -> None:
        written = await self.dynamo.write_if(
            "delete_item",
            TableName=self.table,
            Key=to_item({"pk": LEASE_PK, "sk": FULL_SYNC_SK}),
            # Never release a lease that expired and was taken by another run.
            ConditionExpression="#owner = :owner",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":owner": {"S": owner}},
        )
        if written is None:
            log.warning("full_sync_lease_lost", owner=owner)

    async def full_sync_holder(self) -> FullSyncLease | None:
        response = await self.dynamo.call(
            "get_item", TableName=self.table, Key=to_item({"pk": LEASE_PK, "sk": FULL_SYNC_SK}), ConsistentRead=True
        )
        item = from_item(response.get("Item") or {})
        if not item or float(item.get("expiresAt", 0)) < time.time():
            return None
        return FullSyncLease(str(item.get("owner", "")), float(item["expiresAt"]))

    # -- scope leases and status -----------------------------------------------------------------

    async def acquire_scope_lease(
        self, scope: Scope, owner: str, *, wait: float, expires_at: float | None = None, whole_scope: bool = False
    ) -> bool:
        """``take_scope_lease``: whether the lease was granted."""
        lease = await self.take_scope_lease(scope, owner, wait=wait, expires_at=expires_at, whole_scope=whole_scope)
        return lease is not None

    async def take_scope_lease(
        self, scope: Scope, owner: str, *, wait: float, expires_at: float | None = None, whole_scope: bool = False
    ) -> ScopeLease | None:
        """Take the scope's lease until ``expires_at`` (epoch seconds: its holder's deadline plus
        a margin; default ``lease_seconds`` from now), waiting up to ``wait`` seconds for another
        sync of the same scope to finish; noting when, and whether for the ``whole_scope``.
        Syncs of one scope are serialised: an older observation never overwrites a newer one.

        An owner of a fan-out run (``family_owner``) waits for no other sync of the same run: that
        is a second delivery of the same message (SQS delivers at least once), already syncing the
        scope; waiting would sync it again after it, and under a rate limit wait out another
        Retry-After (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues-at-least-once-delivery.html).
        Granted: with the item's ``ATTRIBUTED_AT`` as it was (the update returns it, no read)."""
        deadline = anyio.current_time() + wait
        delay = 0.05
        while True:
            now = time.time()
            written = await self.dynamo.write_if(
                "update_item",
                TableName=self.table,
                Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
                UpdateExpression="SET #owner = :owner, #exp = :exp, #acct = :acct, #region = :region, "
                "#acq = :acq, #whole = :whole",
                # Free, expired (its holder died), or already ours.
                ConditionExpression="attribute_not_exists(#exp) OR #exp < :now OR #owner = :owner",
                ExpressionAttributeNames=dict(_SCOPE_LEASE_NAMES),
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":acq": {"N": str(int(now * 1000))},
                    ":whole": {"BOOL": whole_scope},
                    ":exp": {"N": str(int(expires_at or now + self.lease_seconds))},
                    ":now": {"N": str(int(now))},
                    ":acct": {"S": scope.account_id},
                    ":region": {"S": scope.region},
                },
                ReturnValues="ALL_OLD",
            )
            if written is not None:
                previous = from_item(written.get("Attributes") or {}).get(ATTRIBUTED_AT)
                return ScopeLease(float(previous) if previous is not None else None)
            if anyio.current_time() + delay > deadline or await self._held_by_family(scope, owner):
                return None
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def scope_lease_holder(self, scope: Scope) -> ScopeLeaseHolder | None:
        """The scope lease's live holder (one consistent read), None when the lease is free."""
        response = await self.dynamo.call(
            "get_item",
            TableName=self.table,
            Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
            ProjectionExpression="#owner, #exp, #acq, #whole",
            ExpressionAttributeNames={
                "#owner": "leaseOwner",
                "#exp": "leaseExpiresAt",
                "#acq": LEASE_ACQUIRED_AT,
                "#whole": LEASE_WHOLE_SCOPE,
            },
            ConsistentRead=True,
        )
        item = from_item(response.get("Item") or {})
        if not item.get("leaseOwner") or float(item.get("leaseExpiresAt", 0)) < time.time():
            return None
        acquired = item.get(LEASE_ACQUIRED_AT)
        return ScopeLeaseHolder(
            owner=str(item["leaseOwner"]),
            expires_at=float(item["leaseExpiresAt"]),
            acquired_at_ms=int(acquired) if acquired is not None else None,
            whole_scope=bool(item.get(LEASE_WHOLE_SCOPE, False)),
        )

    async def _held_by_family(self, scope: Scope, owner: str) -> bool:
        """Whether another sync of ``owner``'s fan-out run holds the scope's lease (one read, only
        for a fan-out owner)."""
        family = lease_family(owner)
        if family is None:
            return False
        response = await self.dynamo.call(
            "get_item",
            TableName=self.table,
            Key=to_item({"pk": SCOPE_PK, "sk": scope.key}),
            ProjectionExpression="#owner",
            ExpressionAttributeNames={"#owner": "leaseOwner"},
            ConsistentRead=True,
        )
        holder = str(from_item(response.get("Item") or {}).get("leaseOwner", ""))
        return holder != owner and lease_family(holder) == family
