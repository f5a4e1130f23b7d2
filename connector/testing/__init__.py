"""A local Segment-compatible sink, for demos and tests; not used by the engine."""
