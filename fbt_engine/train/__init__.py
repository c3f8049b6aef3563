"""Training: the loop, the teacher phase, optimisation, metrics and the engine's run lifecycle."""
