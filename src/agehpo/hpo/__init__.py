"""The study machinery: storage, locks, liveness, orderly stop, the trial loop, executors."""
