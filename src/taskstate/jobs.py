"""What a job author imports: `from taskstate.jobs import JobContext, JobRegistry`.

The job API lives in `taskstate.runtime` (the registry, the context); this module is its
stable public face.
"""

from taskstate.runtime.context import CheckpointTooLarge, JobCancelled, JobContext
from taskstate.runtime.registry import JobRegistry, NoParams, TaskKind

__all__ = ["CheckpointTooLarge", "JobCancelled", "JobContext", "JobRegistry", "NoParams", "TaskKind"]
