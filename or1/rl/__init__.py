"""The RL loop: the trainer, the pieces of one step, batches, the learner step, checkpoints,
evaluation."""
