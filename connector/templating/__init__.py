"""Jinja2 in a bounded sandbox: compiled templates, the sandbox, its limits, the fast path."""
