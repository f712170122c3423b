"""Development and test tools; never imported by ``syncengine`` or ``handlers``, never shipped."""
