"""Old home of the scheduler, kept as an alias: job stores written before 0.2 name these paths.

APScheduler stores each job's function as ``module:name``; an install that scheduled its periodic
edition with an earlier bulletin holds ``bulletin.scheduling:run_periodic_job`` in its database.
"""

from bulletin.runners.scheduler import run_heartbeat_job, run_periodic_job, run_tick_job

__all__ = ["run_heartbeat_job", "run_periodic_job", "run_tick_job"]
