"""Segment-specific code (none needed yet)."""
