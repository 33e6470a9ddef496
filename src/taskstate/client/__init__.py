"""The `taskstate` client: the commands that drive a running server over its HTTP API."""

from taskstate.client.commands import add_client_commands

__all__ = ["add_client_commands"]
