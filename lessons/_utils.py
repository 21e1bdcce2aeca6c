"""Small drawing helpers shared by the lessons (the lessons' subject is always the library itself;
these only put arrays on screen).

    show_grid(ax, a)            a 2-D array as coloured cells with its numbers written in
    show_planes(arrays, ...)    several 2-D arrays side by side, one titled panel each
    spirals(...)                the toy 2-D classification data of lessons 00 and 08
    explore(draw, **choices)    sliders (ipywidgets) over draw's arguments, or the same figure
                                drawn statically for a few values when widgets are absent
    class_legend(fig, names, palette)   swatches with class names for figures of label maps
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np


def _as_numpy(a):
    if hasattr(a, "numpy"):  # Tensor or PoolIndices
        a = a.numpy()
    return np.asarray(a)


def show_grid(ax, a, title=None, fmt="{:.2g}", cmap="viridis", numbers=True, mark=None, **imshow):
    """Draw 2-D ``a`` as cells; write each value in its cell when ``numbers`` (and the array is
    small); outline the cells where boolean ``mark`` is True in red."""
    a = _as_numpy(a)
    if a.ndim != 2:
        raise ValueError(f"show_grid: expected a 2-D array, got shape {a.shape}")
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    if cmap == "RdBu_r":  # diverging maps centred on zero
        imshow.setdefault("vmin", -vmax or -1)
        imshow.setdefault("vmax", vmax or 1)
    im = ax.imshow(a, cmap=cmap, **imshow)
    if numbers and a.size <= 400:
        lo, hi = im.get_clim()
        for (i, j), v in np.ndenumerate(a):
            if a.dtype.kind == "f" and v == 0:
                text = "0"
            else:
                text = fmt.format(v) if a.dtype.kind == "f" else str(v)
            level = (
                (v - lo) / (hi - lo) if hi > lo else 0.0
            )  # a constant array shows as the low colour
            colour = "white" if (cmap in ("viridis", "magma", "gray") and level < 0.5) else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    if mark is not None:
        for i, j in zip(*np.nonzero(_as_numpy(mark))):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(a.shape[1]))
    ax.set_yticks(range(a.shape[0]))
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return im


def show_planes(arrays: dict, size: float = 3.0, **kwargs):
    """One ``show_grid`` panel per (title, 2-D array) of ``arrays``, side by side."""
    fig, axes = plt.subplots(1, len(arrays), figsize=(size * len(arrays), size), squeeze=False)
    for ax, (title, a) in zip(axes[0], arrays.items()):
        show_grid(ax, a, title=title, **kwargs)
    fig.tight_layout()
    return fig, axes[0]


def spirals(n_per_class: int = 100, classes: int = 3, noise: float = 0.15, seed: int = 0):
    """Points of ``classes`` interleaved spirals: (N, 2) float32 points and (N,) int labels."""
    rng = np.random.default_rng(seed)
    points, labels = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = c * 2 * np.pi / classes + 4.0 * r + rng.normal(0, noise, n_per_class)
        points.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        labels.append(np.full(n_per_class, c))
    return np.concatenate(points).astype(np.float32), np.concatenate(labels)


def widgets_available() -> bool:
    """ipywidgets importable and not switched off (``MINISEGNET_NO_WIDGETS=1`` forces the static
    figures, e.g. for a PDF export or to test the fallback)."""
    if os.environ.get("MINISEGNET_NO_WIDGETS"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def explore(draw, static=None, **choices):
    """Let the reader vary ``draw``'s arguments.

    ``choices``: argument name -> list of values (the first is the default). With ipywidgets,
    one slider (or dropdown) per argument redraws the figure. Without, ``draw`` is called for
    each argument dict in ``static`` (default: the defaults, then each argument's last value
    with the others at their defaults), so the printed page shows the same figure.
    Returns the list of argument dicts drawn statically (empty with widgets)."""
    defaults = {name: values[0] for name, values in choices.items()}
    if widgets_available():
        import ipywidgets as widgets

        controls = {}
        for name, values in choices.items():
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                controls[name] = widgets.SelectionSlider(
                    options=values, value=values[0], description=name
                )
            else:
                controls[name] = widgets.Dropdown(options=values, value=values[0], description=name)

        def show(**kwargs):
            draw(**kwargs)
            plt.show()

        widgets.interact(show, **controls)
        return []
    if static is None:
        static = [defaults] + [{**defaults, name: values[-1]} for name, values in choices.items()]
    print("(ipywidgets is not installed: the figure for a few settings instead of sliders)")
    for kwargs in static:
        draw(**kwargs)
        plt.show()
    return static


def class_legend(fig, names, palette, title="classes", **legend):
    """A legend of coloured swatches, one per class name, for figures that show label maps;
    ``palette`` is the (K, 3) uint8 colour table the maps were coloured with."""
    from matplotlib.patches import Patch

    palette = np.asarray(palette)
    handles = [Patch(color=palette[k] / 255.0, label=name) for k, name in enumerate(names)]
    legend.setdefault("loc", "lower center")
    legend.setdefault("ncol", len(handles))
    return fig.legend(handles=handles, title=title, **legend)
