"""EC2 over its query protocol: form-encoded ``Action=DescribeInstances&...`` in, XML out.

DescribeInstances follows the real service where the engine depends on it: an unknown ID in
``InstanceId.N`` fails the whole call (InvalidInstanceID.NotFound), unknown IDs in an
``instance-id`` filter are simply not returned, at most 200 filter values per call
(FilterLimitExceeded), MaxResults 5..1000 and not together with instance IDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl

from .context import Call, Reply
from .errors import AwsError
from .estate import ScopeData
from .ids import EC2_INSTANCE_ID, iso_z
from .model import EC2_STATE_CODES, Ec2Instance
from .pagination import page
from .regions import ALL_REGIONS, endpoint, opt_in_status, partition_of

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
MAX_FILTER_VALUES = 200
MAX_RESULTS = 1000
MIN_RESULTS = 5

_XML_HEADERS = {"Content-Type": "text/xml;charset=UTF-8"}


def parse(body: bytes) -> tuple[str, dict[str, str]]:
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params.get("Action", "Unknown"), params


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def render_error(error: AwsError, request_id: str) -> Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{_esc(error.code)}</Code><Message>{_esc(error.message)}</Message>"
        f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    ).encode()
    return Reply(error.status, body, {**_XML_HEADERS, **error.headers})


def _private_dns(ip: str | None, region: str) -> str:
    if not ip:
        return ""
    host = "ip-" + ip.replace(".", "-")
    return f"{host}.ec2.internal" if region == "us-east-1" else f"{host}.{region}.compute.internal"


def _public_dns(ip: str | None) -> str:
    return f"ec2-{ip.replace('.', '-')}.compute.amazonaws.com" if ip else ""


def _instance_xml(ec2: Ec2Instance) -> bytes:
    """One reservation holding the instance (DRS launches each recovery instance on its own)."""
    if ec2.xml is not None:
        return ec2.xml
    parts = [
        f"<item><reservationId>{ec2.reservation_id}</reservationId><ownerId>{ec2.account_id}</ownerId>",
        "<groupSet/><instancesSet><item>",
        f"<instanceId>{ec2.instance_id}</instanceId><imageId>{ec2.image_id}</imageId>",
        f"<instanceState><code>{EC2_STATE_CODES[ec2.state]}</code><name>{ec2.state}</name></instanceState>",
        f"<privateDnsName>{_private_dns(ec2.private_ip, ec2.region)}</privateDnsName>",
        f"<dnsName>{_public_dns(ec2.public_ip)}</dnsName>",
        "<reason/><amiLaunchIndex>0</amiLaunchIndex><productCodes/>",
        f"<instanceType>{_esc(ec2.instance_type)}</instanceType><launchTime>{iso_z(ec2.launch_time)}</launchTime>",
        f"<placement><availabilityZone>{ec2.availability_zone}</availabilityZone><groupName/>"
        "<tenancy>default</tenancy></placement>",
        "<monitoring><state>disabled</state></monitoring>",
    ]
    if ec2.subnet_id:
        parts.append(f"<subnetId>{_esc(ec2.subnet_id)}</subnetId>")
    if ec2.vpc_id:
        parts.append(f"<vpcId>{_esc(ec2.vpc_id)}</vpcId>")
    if ec2.private_ip:
        parts.append(f"<privateIpAddress>{_esc(ec2.private_ip)}</privateIpAddress>")
    if ec2.public_ip:
        parts.append(f"<ipAddress>{_esc(ec2.public_ip)}</ipAddress>")
    parts.append("<sourceDestCheck>true</sourceDestCheck><groupSet>")
    parts.extend(
        f"<item><groupId>{_esc(gid)}</groupId><groupName>{_esc(name)}</groupName></item>"
        for gid, name in ec2.security_groups
    )
    parts.append(
        "</groupSet><architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>"
        "<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping/>"
        "<virtualizationType>hvm</virtualizationType><tagSet>"
    )
    parts.extend(f"<item><key>{_esc(key)}</key><value>{_esc(value)}</value></item>" for key, value in ec2.tags.items())
    parts.append("</tagSet><hypervisor>xen</hypervisor>")
    if ec2.iam_instance_profile:
        profile_id = "AIPA" + ec2.instance_id[2:].upper()
        parts.append(
            f"<iamInstanceProfile><arn>{_esc(ec2.iam_instance_profile)}</arn><id>{profile_id}</id></iamInstanceProfile>"
        )
    parts.append(
        "<ebsOptimized>false</ebsOptimized><enaSupport>true</enaSupport>"
        f"<platformDetails>{_esc(ec2.platform_details)}</platformDetails></item></instancesSet></item>"
    )
    ec2.xml = "".join(parts).encode()
    return ec2.xml


def _indexed(params: dict[str, str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """``InstanceId.N`` values and ``Filter.N.Name`` / ``Filter.N.Value.M`` pairs, in N order."""
    ids: list[tuple[int, str]] = []
    filters: dict[int, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith("InstanceId."):
            ids.append((_index(key[11:]), value))
        elif key.startswith("Filter."):
            _, number, rest = ([*key.split(".", 2), "", ""])[:3]
            entry = filters.setdefault(_index(number), {"name": None, "values": []})
            if rest == "Name":
                entry["name"] = value
            elif rest.startswith("Value."):
                entry["values"].append((_index(rest[6:]), value))
    ordered_filters = []
    for _, entry in sorted(filters.items()):
        if not entry["name"]:
            raise AwsError("InvalidParameterValue", "The filter 'null' is invalid")
        ordered_filters.append((entry["name"], [v for _, v in sorted(entry["values"])]))
    return [v for _, v in sorted(ids)], ordered_filters


def _index(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AwsError("InvalidParameterValue", f"Invalid parameter index {text!r}") from None


def _matches(ec2: Ec2Instance, name: str, values: Sequence[str]) -> bool:
    if name == "instance-id":
        candidates: Sequence[str | None] = (ec2.instance_id,)
    elif name == "instance-state-name":
        candidates = (ec2.state,)
    elif name == "instance-state-code":
        candidates = (str(EC2_STATE_CODES[ec2.state]),)
    elif name == "instance-type":
        candidates = (ec2.instance_type,)
    elif name == "vpc-id":
        candidates = (ec2.vpc_id,)
    elif name == "subnet-id":
        candidates = (ec2.subnet_id,)
    elif name == "private-ip-address":
        candidates = (ec2.private_ip,)
    elif name == "tag-key":
        candidates = tuple(ec2.tags)
    elif name.startswith("tag:"):
        candidates = (ec2.tags.get(name[4:]),)
    else:
        raise AwsError("InvalidParameterValue", f"The filter '{name}' is invalid")
    for value in values:
        wildcard = "*" in value or "?" in value
        for candidate in candidates:
            if candidate is not None and (fnmatchcase(candidate, value) if wildcard else candidate == value):
                return True
    return False


def describe_instances(call: Call, scope: ScopeData | None, params: dict[str, str]) -> Reply:
    instance_ids, filters = _indexed(params)
    if params.get("DryRun", "").lower() == "true":
        raise AwsError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
    total_values = sum(len(values) for _, values in filters)
    if total_values > MAX_FILTER_VALUES:
        raise AwsError(
            "FilterLimitExceeded",
            f"The maximum number of filter values specified on a single call is {MAX_FILTER_VALUES}",
        )
    max_results: int | None = None
    if "MaxResults" in params:
        if instance_ids:
            raise AwsError(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults",
            )
        try:
            max_results = int(params["MaxResults"])
        except ValueError:
            max_results = -1
        if not MIN_RESULTS <= max_results <= MAX_RESULTS:
            raise AwsError(
                "InvalidParameterValue",
                f"Value ( {params['MaxResults']} ) for parameter maxResults is invalid. "
                f"Expecting a value between {MIN_RESULTS} and {MAX_RESULTS}.",
            )
    malformed = [i for i in instance_ids if not EC2_INSTANCE_ID.match(i)]
    if malformed:
        raise AwsError("InvalidInstanceID.Malformed", f'Invalid id: "{malformed[0]}"')
    instances = scope.ec2_instances if scope is not None else {}
    if instance_ids:
        unique = list(dict.fromkeys(instance_ids))
        missing = [i for i in unique if i not in instances]
        if missing:
            if len(missing) == 1:
                message = f"The instance ID '{missing[0]}' does not exist"
            else:
                message = f"The instance IDs '{', '.join(missing)}' do not exist"
            raise AwsError("InvalidInstanceID.NotFound", message)
        ordered: Sequence[str] = sorted(unique)
    else:
        ordered = scope.ec2_ids if scope is not None else []
    narrowed = bool(instance_ids)
    for name, values in filters:
        if name == "instance-id" and not any("*" in v or "?" in v for v in values):
            # The engine's batched lookups: probe the wanted IDs instead of scanning the scope.
            wanted = set(values)
            if narrowed:
                ordered = [i for i in ordered if i in wanted]
            else:
                ordered = sorted(w for w in wanted if w in instances)
        else:
            ordered = [i for i in ordered if _matches(instances[i], name, values)]
        narrowed = True
    next_token = None
    token = params.get("NextToken") or None
    if max_results is not None or token:
        try:
            chunk, next_token = page(ordered, max_results or MAX_RESULTS, token, "DescribeInstances", call.scope_key)
        except ValueError as exc:
            raise AwsError("InvalidPaginationToken", f"Invalid pagination token: {exc}") from exc
    else:
        chunk = ordered
    body = [
        b'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse xmlns="',
        NAMESPACE.encode(),
        b'"><requestId>',
        call.request_id.encode(),
        b"</requestId><reservationSet>",
    ]
    body.extend(_instance_xml(instances[i]) for i in chunk)
    body.append(b"</reservationSet>")
    if next_token:
        body.append(b"<nextToken>" + next_token.encode() + b"</nextToken>")
    body.append(b"</DescribeInstancesResponse>")
    return Reply(200, b"".join(body), dict(_XML_HEADERS))


def describe_regions(call: Call, params: dict[str, str]) -> Reply:
    """The regions enabled for the caller's account, or all of them with ``AllRegions``; each with
    its opt-in status (API_DescribeRegions; see simulator/regions.py). ``RegionName.N`` and the
    ``region-name`` / ``opt-in-status`` filters narrow the list."""
    estate = call.backend.estate
    enabled = set(estate.enabled_regions(call.account_id))
    every = params.get("AllRegions", "false").lower() == "true"
    # A partition's endpoint knows its own partition's regions only.
    partition = partition_of(call.region)
    candidates = [r for r in dict.fromkeys([*ALL_REGIONS, *enabled]) if partition_of(r) == partition]
    names = [v for k, v in sorted(params.items()) if k.startswith("RegionName.")]
    unknown = [n for n in names if n not in candidates]
    if unknown:
        raise AwsError("InvalidParameterValue", f"Invalid region names: {', '.join(unknown)}")
    rows = [(r, opt_in_status(r, r in enabled)) for r in candidates if every or names or r in enabled]
    if names:
        rows = [row for row in rows if row[0] in names]
    _, filters = _indexed({k: v for k, v in params.items() if k.startswith("Filter.")})
    for name, values in filters:
        if name not in ("region-name", "opt-in-status", "endpoint"):
            raise AwsError("InvalidParameterValue", f"The filter '{name}' is invalid")
        position = {"region-name": 0, "opt-in-status": 1}.get(name)
        rows = [row for row in rows if (endpoint(row[0]) if position is None else row[position]) in values]
    items = "".join(
        f"<item><regionName>{r}</regionName><regionEndpoint>{endpoint(r)}</regionEndpoint>"
        f"<optInStatus>{status}</optInStatus></item>"
        for r, status in rows
    )
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeRegionsResponse xmlns="{NAMESPACE}">'
        f"<requestId>{call.request_id}</requestId><regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
    )
    return Reply(200, body.encode(), dict(_XML_HEADERS))


def dispatch(call: Call, params: dict[str, str]) -> Reply:
    if call.operation == "DescribeRegions":
        return describe_regions(call, params)
    if call.operation != "DescribeInstances":
        raise AwsError("InvalidAction", f"The action {call.operation} is not valid for this web service.")
    estate = call.backend.estate
    with estate.lock:
        return describe_instances(call, estate.scope(call.account_id, call.region), params)
