"""Training curves as a PNG (matplotlib's Agg canvas; no display and no global backend change)."""
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_training_curves(steps, losses, lrs, path, title=None):
    """Draw the loss (top) and the learning rate (bottom) against the iteration and save a PNG.

    Args:
        steps: iteration numbers, length N.
        losses: total loss at each of ``steps``, length N.
        lrs: learning rate at each of ``steps``, length N.
        path: output file, written as PNG whatever its name.
        title: optional figure title.

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(steps) == len(losses) == len(lrs):
        raise ValueError('steps, losses and lrs must have the same length, got %d, %d and %d'
                         % (len(steps), len(losses), len(lrs)))
    figure = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True)
    loss_axes.plot(steps, losses, color='tab:blue', linewidth=1.2)
    loss_axes.set_ylabel('loss')
    loss_axes.grid(alpha=0.3)
    lr_axes.plot(steps, lrs, color='tab:orange', linewidth=1.2)
    lr_axes.set_ylabel('learning rate')
    lr_axes.set_xlabel('iteration')
    lr_axes.grid(alpha=0.3)
    if title:
        loss_axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format='png')
