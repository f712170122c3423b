"""The EC2 instance fields the engine reads: the one list the EC2 fast parser keeps.

botocore's parser returns every member of the ``Instance`` shape; the fast parser
(``syncengine.aws.fastpath.parsers``) returns only these. A field the engine starts to read must be
added here, or under the fast path it reads ``None``: ``tests/unit/aws/test_fastpath.py`` checks that
every ``ec2.get(...)`` of ``syncengine.sync.enrich`` names a field of this list.
"""

from __future__ import annotations

# botocore's member name -> the element name in EC2's DescribeInstances XML (plain strings).
EC2_INSTANCE_SCALARS: dict[str, str] = {
    "InstanceId": "instanceId",
    "InstanceType": "instanceType",
    "PrivateIpAddress": "privateIpAddress",
    "PublicIpAddress": "ipAddress",
    "LaunchTime": "launchTime",
    "VpcId": "vpcId",
    "SubnetId": "subnetId",
}
# Structured members the parser builds from their XML elements (State.Code/Name,
# Placement.AvailabilityZone, IamInstanceProfile.Arn/Id, SecurityGroups[].GroupId/GroupName,
# Tags[].Key/Value).
EC2_INSTANCE_STRUCTURES: tuple[str, ...] = ("State", "Placement", "IamInstanceProfile", "SecurityGroups", "Tags")
EC2_INSTANCE_FIELDS: frozenset[str] = frozenset(EC2_INSTANCE_SCALARS) | frozenset(EC2_INSTANCE_STRUCTURES)
