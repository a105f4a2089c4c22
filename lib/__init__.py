"""Deep metric learning study: data, models, training, evaluation and plots shared by the notebooks."""
import warnings

# tqdm.auto (imported by libraries we use) warns in kernels without ipywidgets; the study does
# not draw progress bars in notebooks, so the warning is only noise in the executed reports.
warnings.filterwarnings("ignore", message="IProgress not found")
