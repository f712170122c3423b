"""One run: plan the scopes, one scope's pipeline (lease, discover, enrich, write, reconcile,
status), the execution index around it, a full sync past one process (``fanout``: the work
queue's messages, then ``syncengine.refresh`` on each), and the engine's entry points (``engine``)."""
