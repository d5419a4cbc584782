"""Local-stack support shared by tests, benchmarks and the observability tools.

Real processes on loopback, never mocks: a redis-server (:mod:`devstack.redis_server`), a
Prometheus (:mod:`devstack.prometheus_server`), the API and workers as subprocesses
(:mod:`devstack.stack`), and the small process helpers they are built from (free ports, start in
a session of their own, bounded waits, stop by pid: :mod:`devstack.procs`).

Development only: no service imports it and no image ships it. ``tests/``, ``bench/`` and
``observability/`` import it; it imports none of them.
"""
