"""Tools for developing the assistant, shared by the tests and the benchmarks (not shipped).

:mod:`devtools.servers` starts the processes and servers both need: ``app.py`` on a free loopback
port (waiting until ``/api/health`` answers) and static host pages.
"""

__all__: list[str] = []
