"""taskstate: the single source of truth for the lifecycle of long-running jobs."""

__version__ = "0.1.0"
