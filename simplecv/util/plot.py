"""Training curves as a PNG (matplotlib's Agg canvas; no display and no global backend change)."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_training_curves(steps, losses, lrs, path, title=None, eval_steps=(), mious=()):
    """Draw the loss, the mIoU of the in-training evaluations (when any) and the learning rate against the step.

    Args:
        steps: iteration numbers, length N.
        losses: total loss at each of ``steps``, length N.
        lrs: learning rate at each of ``steps``, length N.
        path: output file, written as PNG whatever its name.
        title: optional figure title.
        eval_steps: iterations of the evaluations, length M (0: no mIoU panel).
        mious: mIoU at each of ``eval_steps``, length M (None where undefined).

    Raises:
        ValueError: the sequences of a panel differ in length.
    """
    if not len(steps) == len(losses) == len(lrs):
        raise ValueError(
            'steps, losses and lrs must have the same length, got %d, %d and %d' % (len(steps), len(losses), len(lrs))
        )
    if len(eval_steps) != len(mious):
        raise ValueError(
            'eval_steps and mious must have the same length, got %d and %d' % (len(eval_steps), len(mious))
        )
    panels = 3 if len(eval_steps) else 2
    figure = Figure(figsize=(7, 3 * panels), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True)
    loss_axes, lr_axes = axes[0], axes[-1]
    loss_axes.plot(steps, losses, color='tab:blue', linewidth=1.2)
    loss_axes.set_ylabel('loss')
    if panels == 3:
        values = [float('nan') if v is None else 100 * v for v in mious]
        axes[1].plot(eval_steps, values, color='tab:green', marker='o', linewidth=1.2)
        best = max(range(len(values)), key=lambda i: -1 if values[i] != values[i] else values[i])
        axes[1].annotate(
            'best %.2f' % values[best],
            (eval_steps[best], values[best]),
            textcoords='offset points',
            xytext=(0, 6),
            ha='center',
        )
        axes[1].set_ylabel('validation mIoU (%)')
    lr_axes.plot(steps, lrs, color='tab:orange', linewidth=1.2)
    lr_axes.set_ylabel('learning rate')
    lr_axes.set_xlabel('iteration')
    for panel in axes:
        panel.grid(alpha=0.3)
    if title:
        loss_axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, format='png')
