"""The client side of taskstate: drive a running server over its HTTP API and event stream.

`Client` (http.py) and `AsyncClient` (aio.py) are the Python client: submit, get, wait,
cancel, stop, answer, retry, history, and the event stream (following.py), with every
failure a `ClientError` carrying the contract's error code. The `taskstate` command's
client commands are built on them (commands.py, watch.py, tree.py, schedules.py).
"""

from taskstate.client.aio import AsyncClient
from taskstate.client.http import Client, ClientError, ServerUnreachable

__all__ = ["AsyncClient", "Client", "ClientError", "ServerUnreachable"]
