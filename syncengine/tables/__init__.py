"""One store per table, one class each: the cache, the status table (leases and run records
included), our execution index, the target accounts and the orchestration's tables."""
