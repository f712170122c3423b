"""AWS's limits, checked before AWS checks them: every name the stacks and deploy.sh derive fits
its service's limit at the longest ProjectName and Environment the parameters allow; the refresh
function's event source mapping never outruns its reserved concurrency; the account quota the
deployment needs is the one docs/DEPLOY.md states."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from tests.cfn_yaml import CFN_DIR, ROOT
from tests.unit.cfn.test_beside import (
    HUB_TEMPLATES,
    NAME_PROPERTY,
    hub_parameters,
    load_template,
    refused_by_rules,
    render,
)

# Documented maximum lengths (each service's API reference / quotas page).
LIMITS = {
    "dynamodb-table": 255,
    "lambda-function": 64,
    "log-group": 512,
    "sqs-queue": 80,
    "iam-role": 64,
    "events-rule": 64,
    "events-bus": 256,
    "sns-topic": 256,
    "cloudwatch-alarm": 255,
    "cloudwatch-dashboard": 255,
    "kms-alias": 256,
    "rest-api": 1024,
    "api-authorizer": 1024,
    "api-request-validator": 1024,
}
# Types whose *Name properties name another resource (a function, a bus, a stage), not themselves.
REFERS_BY_NAME = {
    "AWS::Lambda::Permission",
    "AWS::Lambda::EventSourceMapping",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Events::EventBusPolicy",
    "AWS::ApiGateway::Stage",
}
STACK_NAME_LIMIT, BUCKET_NAME_LIMIT, LAYER_NAME_LIMIT = 128, 63, 140
# The longest region names of the partitions (us-isob-east-1 and ap-southeast-5 are 14).
LONGEST_REGION = "ap-southeast-5"


def longest_value(pattern: str) -> str:
    """The longest run of 'a' the parameter's pattern admits (every pattern here admits them)."""
    length = max(n for n in range(1, 300) if re.fullmatch(pattern, "a" * n))
    assert not re.fullmatch(pattern, "a" * 300), "unbounded pattern: no longest value"
    return "a" * length


def longest_parameters() -> tuple[str, str]:
    """ProjectName and Environment at their longest, and the same in every template that declares them."""
    values = set()
    for template in (*HUB_TEMPLATES, "master-template.yaml"):
        declared = load_template(template)["Parameters"]
        values.add(
            (
                longest_value(declared["ProjectName"]["AllowedPattern"]),
                longest_value(declared["Environment"]["AllowedPattern"]),
            )
        )
    assert len(values) == 1, f"templates disagree on the longest names: {values}"
    (longest,) = values
    return longest


def test_cfn_longest_parameters_are_those_deploy_sh_accepts() -> None:
    project, environment = longest_parameters()
    script = (ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert f"{{1,{len(project) - 1}}}$" in re.search(r'PROJECT_NAME" =~ (\S+) \]\]', script).group(1)
    assert f"{{1,{len(environment)}}}$" in re.search(r'ENVIRONMENT" =~ (\S+) \]\]', script).group(1)


@pytest.mark.parametrize("mode", ["standalone", "beside"])
def test_cfn_every_derived_name_fits_at_the_longest_parameters(mode: str) -> None:
    project, environment = longest_parameters()
    checked = 0
    for template in HUB_TEMPLATES:
        resources = render(load_template(template), hub_parameters(template, project, environment, mode)).resources()
        for logical_id, resource in resources.items():
            if resource["Type"] not in NAME_PROPERTY:
                continue
            prop, namespace = NAME_PROPERTY[resource["Type"]]
            name = resource["Properties"].get(prop)
            if name is None:
                continue  # named by CloudFormation
            assert project in name and environment in name, (logical_id, name)
            assert len(name) <= LIMITS[namespace], f"{template} {logical_id}: {len(name)} > {LIMITS[namespace]}: {name}"
            checked += 1
    assert checked >= 25


@pytest.mark.parametrize("template", sorted(path.name for path in CFN_DIR.glob("*.yaml")))
def test_cfn_every_named_resource_type_has_a_known_limit(template: str) -> None:
    """A new kind of named resource must be added to NAME_PROPERTY (and LIMITS) to be checked."""
    for logical_id, resource in load_template(template)["Resources"].items():
        if resource["Type"] in REFERS_BY_NAME:
            continue
        names = [key for key in resource.get("Properties") or {} if key.endswith("Name")]
        if names:
            assert resource["Type"] in NAME_PROPERTY, (template, logical_id, names)


def _script_default(variable: str) -> str:
    """The default deploy.sh gives a variable (``NAME="${NAME:-default}"``)."""
    script = (ROOT / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    match = re.search(rf'^{variable}="\$\{{{variable}:-(.+)\}}"$', script, re.M)
    assert match, variable
    return match.group(1)


def _expand(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], template)


def test_cfn_deploy_script_names_fit_at_the_longest_parameters() -> None:
    project, environment = longest_parameters()
    values = {
        "PROJECT_NAME": project,
        "ENVIRONMENT": environment,
        "ACCOUNT_ID": "1" * 12,
        "REGION": LONGEST_REGION,
    }
    assert len(_expand(_script_default("STACK_NAME"), values)) <= STACK_NAME_LIMIT
    assert len(_expand(_script_default("DEPLOY_BUCKET"), values)) <= BUCKET_NAME_LIMIT
    assert len(_expand(_script_default("LAYER_NAME"), values)) <= LAYER_NAME_LIMIT


# ---------------------------------------------------------------------------------------------
# Concurrency


def _master_values(name: str) -> list[int]:
    return [int(value) for value in load_template("master-template.yaml")["Parameters"][name]["AllowedValues"]]


def test_cfn_master_refuses_a_mapping_cap_above_the_reservation() -> None:
    """Every allowed pair: refused exactly when a reservation exists and is below the cap."""
    master = load_template("master-template.yaml")
    pairs = itertools.product(_master_values("RefreshMaximumConcurrency"), _master_values("RefreshReservedConcurrency"))
    for maximum, reserved in pairs:
        refused = refused_by_rules(
            master, {"RefreshMaximumConcurrency": str(maximum), "RefreshReservedConcurrency": str(reserved)}
        )
        assert bool(refused) == (reserved != -1 and reserved < maximum), (maximum, reserved, refused)


def test_cfn_refresh_concurrency_defaults_pass_the_rules() -> None:
    master = load_template("master-template.yaml")
    assert refused_by_rules(master, {}) == []
    passed = master["Resources"]["LambdaStack"]["Properties"]["Parameters"]
    for name in (
        "RefreshMaximumConcurrency",
        "RefreshReservedConcurrency",
        "RefreshMemorySize",
        "RefreshTimeout",
        "RefreshBatchSize",
        "RefreshBatchWindowSeconds",
        "RefreshMaxReceiveCount",
    ):
        assert passed[name] == {"Ref": name}, name
        lambda_default = load_template("lambda-stack.yaml")["Parameters"][name]["Default"]
        assert master["Parameters"][name]["Default"] == lambda_default, name


def reserved_concurrency_total(master: dict[str, Any]) -> int:
    parameters = master["Parameters"]
    return sum(
        max(int(spec["Default"]), 0) for name, spec in parameters.items() if name.endswith("ReservedConcurrency")
    )


def test_cfn_deploy_doc_states_the_concurrency_quota_the_templates_need() -> None:
    """Lambda keeps 100 of the account's concurrency unreserved: the quota must cover the
    reservations plus those 100, as DEPLOY.md's prerequisites say."""
    master = load_template("master-template.yaml")
    reserved = reserved_concurrency_total(master)
    lambda_stack = load_template("lambda-stack.yaml")
    functions = [r for r in lambda_stack["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert all("ReservedConcurrentExecutions" in f["Properties"] for f in functions)
    assert len([n for n in master["Parameters"] if n.endswith("ReservedConcurrency")]) == len(functions)
    doc = " ".join((ROOT / "docs" / "DEPLOY.md").read_text(encoding="utf-8").split())
    assert f"at least {reserved + 100}" in doc, (reserved, reserved + 100)
    assert f"{reserved} reserved" in doc
