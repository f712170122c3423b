"""Preview and terminate an execution's recovery instances: what may be touched (``rules``),
the DRS calls (``drs``) and the use case (``instances``)."""
