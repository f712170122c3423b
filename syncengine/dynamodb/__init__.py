"""The one DynamoDB client path: the seam every table store calls through (limits, retries, errors,
the attribute codec) over DynamoDB's JSON protocol on the standard library. Built on
``syncengine.core`` only."""
