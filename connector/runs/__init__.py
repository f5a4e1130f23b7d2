"""Runs beyond one request: batches, incomplete executions (write-ahead and replay) and triggers."""
