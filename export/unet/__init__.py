"""Enhanced U-Net (seed 004): model, re-parameterisation, training, references, evaluation, predict."""
