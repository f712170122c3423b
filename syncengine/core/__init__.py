"""The lowest layer: settings (one frozen value object), models, the error tree, logging, metrics,
the one retry layer, and the process-wide pieces every layer above uses (limiters, call counters,
the resident event loop, GC tuning). Imports nothing else of the engine."""
