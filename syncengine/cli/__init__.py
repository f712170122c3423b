"""The ``syncengine`` command: the assembly of subcommands (``main``) and the operator's commands."""
