"""The web edge: HTTP routes, the event stream, authentication, guards and metrics."""
