"""The client side of taskstate: drive a running server over its HTTP API and event stream.

`http` is the HTTP client, `watch` follows the event stream live, `formatting` shows
tasks to people, and `commands` wires them into `taskstate submit/status/watch/...`.
"""

from taskstate.client.commands import add_client_commands

__all__ = ["add_client_commands"]
