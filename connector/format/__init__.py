"""The manifest format: pydantic models, the one source of truth, and the JSON Schemas
generated from them.
"""
