"""Targeted syncs from outside: DRS/EC2 events and fan-out messages (``batch``) and a completed
wave (``waves``). The fan-out sweep that sends the messages is the full sync's
(``syncengine.sync.fanout``)."""
