"""Thin Lambda entry points: parse the event, call one engine function, shape the response.

* ``handlers.data_management.lambda_handler``: the 5-minute schedule, every direct operation,
  and the four API Gateway routes (REST v1 and HTTP v2 events);
* ``handlers.execution.lambda_handler`` / ``sync_recovery_instances_after_wave``: the sync after
  a wave completes (never raises, never fails the wave);
* ``handlers.query.lambda_handler``: the read-only routes and operations.

Modules here hold no AWS client and loop over no accounts: ``syncengine`` does the work. Tests
swap the engine, the settings and the self-invoke seam with ``handlers.dependencies.configure``.
Nothing is imported here, so importing one handler never builds another's resolvers.
"""
