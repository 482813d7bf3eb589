"""Multi-task displacement CNN: training, references, few-shot adaptation, conformal intervals, evaluation."""
