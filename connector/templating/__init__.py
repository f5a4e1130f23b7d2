"""Jinja2 in a bounded sandbox: compiled templates, the sandbox's filters and limits,
and the fast path.
"""
