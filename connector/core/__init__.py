"""The spine of a run: load manifests, map and check values, build the request, add
auth, send, make bundles.
"""
