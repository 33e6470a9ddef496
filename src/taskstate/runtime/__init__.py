"""The embedded runtime: the supervisor, each running job, and what a job's code sees."""
