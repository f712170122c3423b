"""The DynamoDB tables, read from ``cfn/database-stack.yaml`` itself, and ``syncengine tables``.

Local tables (demo, tests, benchmarks) are created from the same template CloudFormation deploys,
so a key or an index can never differ between a test and production. Only what DynamoDB's
CreateTable needs is taken from the template (keys, attribute definitions, GSIs with their
projections, TTL); the names come from ``TableNames`` (the env vars), as in the Lambda functions.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aioboto3
import anyio
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from syncengine.core.config import DEFAULT_HOME_REGION, SyncSettings, TableNames
from syncengine.core.errors import ConfigurationError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

ENV_TEMPLATE_PATH = "SYNCENGINE_DATABASE_TEMPLATE"
TEMPLATE_RELATIVE_PATH = Path("cfn") / "database-stack.yaml"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DYNAMODB_TABLE_TYPE = "AWS::DynamoDB::Table"

# CloudFormation logical id -> the TableNames field that names the table in code.
LOGICAL_ID_TO_FIELD: Mapping[str, str] = {
    "RecoveryInstancesCacheTable": "cache",
    "RecoveryInstanceSyncStatusTable": "status",
    "TargetAccountsTable": "target_accounts",
    "ExecutionHistoryTable": "execution_history",
    "RecoveryPlansTable": "recovery_plans",
    "ProtectionGroupsTable": "protection_groups",
    "ExecutionIndexTable": "execution_index",
}

# Real DynamoDB takes seconds to minutes to create a table; local backends are ACTIVE at once.
ACTIVE_TIMEOUT_SECONDS = 600.0
POLL_FIRST_DELAY = 0.05
POLL_MAX_DELAY = 2.0
# What `tables create/delete` reports as a failure; anything else in a task group is a bug.
EXPECTED_FAILURES = (ConfigurationError, ClientError, BotoCoreError, TimeoutError)
# Backends without UpdateTimeToLive (dynalite) answer with these; TTL only matters in AWS.
TTL_UNSUPPORTED_CODES = frozenset({"UnknownOperationException", "UnrecognizedClientException"})


@dataclass(frozen=True)
class TableDefinition:
    """One ``AWS::DynamoDB::Table`` of the template, reduced to what CreateTable needs."""

    logical_id: str
    tables_field: str
    attribute_definitions: tuple[dict[str, str], ...]
    key_schema: tuple[dict[str, str], ...]
    global_secondary_indexes: tuple[dict[str, Any], ...] = ()
    billing_mode: str = "PAY_PER_REQUEST"
    ttl_attribute: str | None = None

    def key_attribute(self, key_type: str) -> str | None:
        """The table's HASH or RANGE attribute name, None when it has no such key."""
        return next((k["AttributeName"] for k in self.key_schema if k["KeyType"] == key_type), None)

    def index(self, name: str) -> dict[str, Any]:
        for gsi in self.global_secondary_indexes:
            if gsi["IndexName"] == name:
                return gsi
        raise KeyError(f"{self.logical_id} has no index {name!r}")

    def table_name(self, tables: TableNames) -> str:
        return str(getattr(tables, self.tables_field))

    def create_table_request(self, table_name: str) -> dict[str, Any]:
        """CreateTable arguments. Always on-demand: the template's tables are, and on-demand
        needs no throughput numbers that would only be guesses locally."""
        request: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": copy.deepcopy(list(self.attribute_definitions)),
            "KeySchema": copy.deepcopy(list(self.key_schema)),
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.global_secondary_indexes:
            request["GlobalSecondaryIndexes"] = copy.deepcopy(list(self.global_secondary_indexes))
        return request


# ---------------------------------------------------------------------------------------------
# Reading the template


class CloudFormationLoader(yaml.SafeLoader):
    """A safe YAML loader that also accepts CloudFormation's short-form intrinsic tags."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    # Short forms become their long forms (``!Sub x`` -> ``{"Fn::Sub": x}``), so the rest of the
    # code sees one shape whichever form the template author used.
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CloudFormationLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict):
        raise ConfigurationError(f"{path} is not a CloudFormation template")
    return document


def resolve_template_path(template_path: str | os.PathLike[str] | None = None) -> Path:
    """The argument, else ``$SYNCENGINE_DATABASE_TEMPLATE``, else the project's own template
    (beside the package in a checkout, or under the working directory)."""
    explicit = template_path or os.environ.get(ENV_TEMPLATE_PATH)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(f"database template not found: {path}")
        return path
    candidates = [PROJECT_ROOT / TEMPLATE_RELATIVE_PATH, Path.cwd() / TEMPLATE_RELATIVE_PATH]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ConfigurationError(f"database template not found (tried {tried}); set {ENV_TEMPLATE_PATH}")


def load_table_definitions(template_path: str | os.PathLike[str] | None = None) -> list[TableDefinition]:
    """Every DynamoDB table of the database template, in template order."""
    path = resolve_template_path(template_path)
    return table_definitions_from_template(load_template(path), source=str(path))


def table_definitions_from_template(template: Mapping[str, Any], *, source: str = "template") -> list[TableDefinition]:
    resources = template.get("Resources") or {}
    table_resources = {
        logical_id: resource
        for logical_id, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == DYNAMODB_TABLE_TYPE
    }
    _check_mapping(table_resources, source)
    return [
        _definition(logical_id, resource.get("Properties") or {}) for logical_id, resource in table_resources.items()
    ]


def _check_mapping(table_resources: Mapping[str, Any], source: str) -> None:
    # A table the code does not know would never be created locally (or named by an env var);
    # a table the code expects but the template lacks would break at the first request.
    unknown = sorted(set(table_resources) - set(LOGICAL_ID_TO_FIELD))
    missing = sorted(set(LOGICAL_ID_TO_FIELD) - set(table_resources))
    problems = []
    if unknown:
        problems.append(f"tables unknown to devtools.tables.LOGICAL_ID_TO_FIELD: {', '.join(unknown)}")
    if missing:
        problems.append(f"tables missing from the template: {', '.join(missing)}")
    if problems:
        raise ConfigurationError(f"{source}: " + "; ".join(problems))


def _definition(logical_id: str, properties: Mapping[str, Any]) -> TableDefinition:
    key_schema = properties.get("KeySchema")
    attributes = properties.get("AttributeDefinitions")
    if not key_schema or not attributes:
        raise ConfigurationError(f"{logical_id} needs KeySchema and AttributeDefinitions")
    ttl = properties.get("TimeToLiveSpecification") or {}
    return TableDefinition(
        logical_id=logical_id,
        tables_field=LOGICAL_ID_TO_FIELD[logical_id],
        attribute_definitions=tuple(_pick(a, "AttributeName", "AttributeType") for a in attributes),
        key_schema=tuple(_pick(k, "AttributeName", "KeyType") for k in key_schema),
        global_secondary_indexes=tuple(_gsi(g) for g in properties.get("GlobalSecondaryIndexes") or ()),
        billing_mode=str(properties.get("BillingMode", "PROVISIONED")),
        ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") is True else None,
    )


def _pick(mapping: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: mapping[key] for key in keys}


def _gsi(index: Mapping[str, Any]) -> dict[str, Any]:
    # Throughput settings are dropped: every local table is on-demand.
    return {
        "IndexName": index["IndexName"],
        "KeySchema": [_pick(k, "AttributeName", "KeyType") for k in index["KeySchema"]],
        "Projection": copy.deepcopy(dict(index.get("Projection") or {"ProjectionType": "ALL"})),
    }


# ---------------------------------------------------------------------------------------------
# Creating and deleting


@dataclass(frozen=True)
class _Target:
    name: str
    definition: TableDefinition


def _client(session: aioboto3.Session | None, endpoint_url: str | None, region: str | None) -> Any:
    session = session or aioboto3.Session()
    # endpoint_url=None lets botocore apply AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL itself.
    return session.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region or session.region_name or DEFAULT_HOME_REGION,
    )


async def create_tables(
    tables: TableNames,
    *,
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    template_path: str | os.PathLike[str] | None = None,
    definitions: Sequence[TableDefinition] | None = None,
) -> list[str]:
    """Create every table of the template that does not exist yet and wait until all are ACTIVE.

    Returns the names of the tables this call created; the others already existed and were left
    alone (their keys are not compared: existing tables are never altered from here).
    """
    if definitions is None:
        definitions = load_table_definitions(template_path)
    targets = _targets(tables, definitions)
    async with _client(session, endpoint_url, region) as client:
        outcomes = await _for_each(targets, lambda target: _create_one(client, target))
        with anyio.fail_after(ACTIVE_TIMEOUT_SECONDS):
            await _for_each(targets, lambda target: _wait_active(client, target.name))
        created = [target for target, was_created in zip(targets, outcomes, strict=True) if was_created]
        await _for_each(created, lambda target: _enable_ttl(client, target))
    return [target.name for target in created]


async def delete_tables(
    tables: TableNames,
    *,
    session: aioboto3.Session | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> list[str]:
    """Delete the six tables; absent ones are ignored. Returns the names actually deleted.
    Does not wait for DELETING to finish: callers are test cleanups and use fresh names."""
    names = [str(getattr(tables, f.name)) for f in fields(TableNames)]
    async with _client(session, endpoint_url, region) as client:
        outcomes = await _for_each(names, lambda name: _delete_one(client, name))
    return [name for name, deleted in zip(names, outcomes, strict=True) if deleted]


_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


async def _for_each(items: Sequence[_Item], action: Callable[[_Item], Awaitable[_Result]]) -> list[_Result]:
    """Run ``action`` on every item concurrently, results in item order. One task group, so a
    failure cancels the siblings instead of leaving them running on a closing client."""
    results: dict[int, _Result] = {}

    async def run(index: int, item: _Item) -> None:
        results[index] = await action(item)

    async with anyio.create_task_group() as group:
        for index, item in enumerate(items):
            group.start_soon(run, index, item)
    return [results[index] for index in range(len(items))]


def _targets(tables: TableNames, definitions: Iterable[TableDefinition]) -> list[_Target]:
    return [_Target(definition.table_name(tables), definition) for definition in definitions]


async def _create_one(client: DynamoDBClient, target: _Target) -> bool:
    try:
        await client.create_table(**target.definition.create_table_request(target.name))
    except ClientError as exc:
        # Already there (or being created by someone else): idempotent, and we wait for it below.
        if _error_code(exc) == "ResourceInUseException":
            return False
        raise
    return True


async def _wait_active(client: DynamoDBClient, name: str) -> None:
    # botocore's table_exists waiter polls every 20 s: far too slow for local backends, which are
    # ACTIVE at once. Poll quickly first and back off towards real DynamoDB's pace.
    # The caller bounds the whole wait with a timeout scope.
    delay = POLL_FIRST_DELAY
    while True:
        description = (await client.describe_table(TableName=name))["Table"]
        if _is_active(description):
            return
        await anyio.sleep(delay)
        delay = min(delay * 2, POLL_MAX_DELAY)


def _is_active(description: Mapping[str, Any]) -> bool:
    indexes = description.get("GlobalSecondaryIndexes") or ()
    return description.get("TableStatus") == "ACTIVE" and all(
        index.get("IndexStatus", "ACTIVE") == "ACTIVE" for index in indexes
    )


async def _enable_ttl(client: DynamoDBClient, target: _Target) -> None:
    attribute = target.definition.ttl_attribute
    if attribute is None:
        return
    try:
        await client.update_time_to_live(
            TableName=target.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    except ClientError as exc:
        if _error_code(exc) not in TTL_UNSUPPORTED_CODES:
            raise


async def _delete_one(client: DynamoDBClient, name: str) -> bool:
    try:
        await client.delete_table(TableName=name)
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# ---------------------------------------------------------------------------------------------
# The `syncengine tables` command


def register(subparsers: Any) -> None:
    """Add ``tables create`` and ``tables delete`` to the ``syncengine`` command."""
    parser = subparsers.add_parser(
        "tables",
        help="create or delete the DynamoDB tables",
        description="Manage the six DynamoDB tables defined in cfn/database-stack.yaml. Names come from "
        "the table env vars (RECOVERY_INSTANCES_CACHE_TABLE, ...).",
    )
    actions = parser.add_subparsers(dest="tables_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create missing tables (idempotent) and wait until ACTIVE")
    _add_endpoint_arguments(create)
    create.add_argument("--template", help=f"database template (default: ${ENV_TEMPLATE_PATH}, else the project's own)")
    create.set_defaults(func=run_create)
    delete = actions.add_parser("delete", help="delete the tables (for local endpoints and tests)")
    _add_endpoint_arguments(delete)
    # Deleting is irreversible: the caller must say so, so a stray command cannot drop production tables.
    delete.add_argument("--yes", action="store_true", help="confirm the deletion")
    delete.set_defaults(func=run_delete)


def _add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        help="DynamoDB endpoint (default: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, else us-east-1)")


def run_create(args: argparse.Namespace) -> int:
    tables = SyncSettings.from_env().tables
    try:
        definitions = load_table_definitions(args.template)
        created = asyncio.run(
            create_tables(tables, endpoint_url=args.endpoint_url, region=args.region, definitions=definitions)
        )
    except Exception as exc:
        print(f"tables create failed: {_failure_message(exc)}", file=sys.stderr)
        return 1
    for definition in definitions:
        name = definition.table_name(tables)
        print(f"{'created' if name in created else 'exists '}  {name}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        print("tables delete drops every table and its data; repeat with --yes", file=sys.stderr)
        return 2
    tables = SyncSettings.from_env().tables
    try:
        deleted = asyncio.run(delete_tables(tables, endpoint_url=args.endpoint_url, region=args.region))
    except Exception as exc:
        print(f"tables delete failed: {_failure_message(exc)}", file=sys.stderr)
        return 1
    for name in (str(getattr(tables, f.name)) for f in fields(TableNames)):
        print(f"{'deleted' if name in deleted else 'absent '}  {name}")
    return 0


def _failure_message(exc: Exception) -> str:
    """One line for expected failures (alone or grouped by a task group); bugs propagate."""
    leaves = list(_leaves(exc))
    if not all(isinstance(leaf, EXPECTED_FAILURES) for leaf in leaves):
        raise exc
    return "; ".join(dict.fromkeys(str(leaf) or type(leaf).__name__ for leaf in leaves))


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.tables create ...``: this command alone, without the full CLI."""
    parser = argparse.ArgumentParser(prog="python -m devtools.tables")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["tables", *argv] if argv is not None else ["tables", *sys.argv[1:]])
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
