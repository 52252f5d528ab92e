"""The durable job queue: enqueue, lease, heartbeat, complete, fail, cancel, fairness, affinity."""

from ..errors import LeaseLost
from .queue import JobQueue, QueueFull, QueueLimits

__all__ = ["JobQueue", "LeaseLost", "QueueFull", "QueueLimits"]
