"""Development tools beside the engine (never in the Lambda artifact): local stand-ins for AWS machinery."""
