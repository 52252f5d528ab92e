"""The durable job queue: enqueue, lease, heartbeat, complete, fail, cancel, fairness, affinity."""

from .queue import JobQueue, LeaseLost, QueueFull, QueueLimits

__all__ = ["JobQueue", "LeaseLost", "QueueFull", "QueueLimits"]
