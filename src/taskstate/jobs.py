"""What a job author imports: `from taskstate.jobs import JobContext, JobRegistry`.

The job API lives in `taskstate.runtime`; this module is its stable public face.
"""

from taskstate.runtime.jobs import (
    CheckpointTooLarge,
    JobCancelled,
    JobContext,
    JobRegistry,
    NoParams,
)

__all__ = ["CheckpointTooLarge", "JobCancelled", "JobContext", "JobRegistry", "NoParams"]
