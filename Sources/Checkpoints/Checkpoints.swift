// Checkpoints module (work in progress).
