"""Our index of the orchestration's execution history: the table (``table``), its items
(``items``) and the in-memory index that attributes a recovery instance to an execution
(``lookup``); docs/EXECUTION-INDEX.md."""
