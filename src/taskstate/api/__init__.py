"""The HTTP API (CONTRACT §2): thin routes over the store and the supervisor."""
