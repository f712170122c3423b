"""Check-existing: a recovery plan -> its servers -> their cached recovery instances, from DynamoDB
alone."""
