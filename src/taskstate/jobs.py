"""What a job author imports: `from taskstate.jobs import JobContext, JobRegistry`.

The job API lives in `taskstate.runtime` (the registry, the context); this module is its
stable public face.
"""

from taskstate.runtime.context import (
    CheckpointTooLarge,
    ChildFailed,
    ChildHandle,
    Decision,
    JobCancelled,
    JobContext,
    Restoration,
)
from taskstate.runtime.registry import JobRegistry, NoParams, TaskKind

__all__ = [
    "CheckpointTooLarge",
    "ChildFailed",
    "ChildHandle",
    "Decision",
    "JobCancelled",
    "JobContext",
    "JobRegistry",
    "NoParams",
    "Restoration",
    "TaskKind",
]
