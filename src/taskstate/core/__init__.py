"""The lifecycle core: the transition table, the tables, the one writer, the store, the
feed and the bus. It imports nothing of the runtime or the web edge."""
