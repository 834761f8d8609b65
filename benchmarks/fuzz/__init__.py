"""``make fuzz``: a schema-aware fuzzer against a real ``dihya-realtime serve``.

It lives beside the benchmarks (``python -m benchmarks.fuzz`` from the repository root)
because it is a developer tool, not part of the installed package, and because the ``abuse``
scenario of ``benchmarks/run.py`` drives the same hostile clients (:mod:`.wire`, :mod:`.yjs`,
:mod:`.abuse`) with bystanders measured the same way.
"""
