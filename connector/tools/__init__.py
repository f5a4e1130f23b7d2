"""What integrators and hosts use around the engine: the command line, docs, example
files, scaffolding.
"""
