"""What the tests share, one idea a module (the benchmarks use them too):

- `databases`: PostgreSQL's admin connection, fresh databases (empty, or copied from a
  migrated template), terminating a database's connections, a started store.
- `readers`: reading a database (or a job's journal) straight, beside the service.
- `contract`: CONTRACT §1's table as the tests know it, and the checks of transition rows.
- `servers`: the real app on a real uvicorn in this process (`live_server`), its settings.
- `processes`: `taskstate serve` as a subprocess that a test can kill.
- `waits`: waiting, bounded, for a condition, a task's state, an idle service.
- `browser`: Debian's chromium through playwright, for the end-to-end tests.

Nothing here imports pytest at module level except where a helper is a check that fails
a test, so that `python -m bench` can use the servers and databases.
"""
