"""Deep metric learning study: data, models, training, evaluation and plots shared by the notebooks."""
