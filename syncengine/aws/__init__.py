"""DRS, EC2, STS and Lambda through aiobotocore: one Session, per-account credentials (AssumeRole
with ExternalId and a session policy), partitions and regions, and the response parsers on
botocore's public extension point (``fastpath``). Built on ``syncengine.core`` only."""
