"""Plots that say more than numbers: point clouds, densities, vector fields, paths, image grids,
and particle animations (GIF file or inline HTML). Each returns the matplotlib Axes (or Figure)."""
from __future__ import annotations


import matplotlib.pyplot as plt
import numpy as np
import torch


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _ax(ax):
    return ax if ax is not None else plt.subplots(figsize=(4, 4))[1]


def _frame(ax, lim: float | None, title: str | None):
    """Square axes over [-lim, lim]^2 (unless lim is None), equal aspect, optional title."""
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def scatter2d(x, ax=None, title: str | None = None, lim: float | None = 3.0, s: float = 2, **kw):
    """A 2D point cloud (N, 2)."""
    ax = _ax(ax)
    x = _np(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=kw.pop("alpha", 0.5), **kw)
    return _frame(ax, lim, title)


def grid2d(lim: float = 3.0, n: int = 100) -> torch.Tensor:
    """An n x n grid of points covering [-lim, lim]^2, as (n*n, 2), row-major in y then x."""
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)


def density_heatmap(log_prob_fn, ax=None, lim: float = 3.0, n: int = 100, title: str | None = None,
                    cmap: str = "viridis"):
    """exp(log_prob_fn(points)) on a grid over [-lim, lim]^2."""
    ax = _ax(ax)
    pts = grid2d(lim, n)
    with torch.no_grad():
        dens = torch.exp(log_prob_fn(pts)).reshape(n, n)  # (n_y, n_x)
    ax.imshow(_np(dens), origin="lower", extent=(-lim, lim, -lim, lim), cmap=cmap)
    return _frame(ax, None, title)


def vector_field(f, t: float = 0.0, ax=None, lim: float = 3.0, n: int = 20, title: str | None = None):
    """Arrows of f(x, t) on an n x n grid."""
    ax = _ax(ax)
    pts = grid2d(lim, n)
    with torch.no_grad():
        v = _np(f(pts, t))
    p = _np(pts)
    ax.quiver(p[:, 0], p[:, 1], v[:, 0], v[:, 1], np.hypot(v[:, 0], v[:, 1]), cmap="coolwarm")
    return _frame(ax, lim, title)


def trajectories(path, ax=None, n_show: int = 50, lim: float | None = 3.0, title: str | None = None):
    """Paths (T, N, 2) as lines, with start (grey) and end (red) points."""
    ax = _ax(ax)
    p = _np(path)[:, :n_show]
    ax.plot(p[:, :, 0], p[:, :, 1], color="tab:blue", alpha=0.4, lw=0.8)
    ax.scatter(p[0, :, 0], p[0, :, 1], s=6, color="grey", zorder=3)
    ax.scatter(p[-1, :, 0], p[-1, :, 1], s=6, color="tab:red", zorder=3)
    return _frame(ax, lim, title)


def image_grid(images, nrow: int = 8, ax=None, title: str | None = None):
    """Images (N, C, H, W) in [-1, 1] tiled into a grid."""
    x = _np(images)
    n, c, h, w = x.shape
    ncol = nrow
    nrows = int(np.ceil(n / ncol))
    canvas = np.ones((nrows * (h + 1) + 1, ncol * (w + 1) + 1, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = \
            x[i].transpose(1, 2, 0)
    canvas = np.clip((canvas + 1) / 2, 0, 1)
    ax = ax if ax is not None else plt.subplots(figsize=(ncol * 0.6, nrows * 0.6))[1]
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def animate_particles(path, filename: str | None = None, lim: float = 3.0, fps: int = 15,
                      n_show: int = 1000, title: str | None = None):
    """Animate particles along paths (T, N, 2).

    With ``filename`` the animation is saved as a GIF and the path returned; otherwise it comes
    back as inline HTML for Jupyter (``IPython.display.HTML``).
    """
    from matplotlib import animation

    p = _np(path)[:, :n_show]
    fig, ax = plt.subplots(figsize=(4, 4))
    sc = ax.scatter(p[0, :, 0], p[0, :, 1], s=3, alpha=0.6)
    _frame(ax, lim, None)
    label = ax.set_title(title or "")

    def frame(i):
        sc.set_offsets(p[i])
        label.set_text(f"{title + ': ' if title else ''}step {i}/{len(p) - 1}")
        return (sc, label)

    anim = animation.FuncAnimation(fig, frame, frames=len(p), interval=1000 / fps, blit=False)
    plt.close(fig)
    if filename:
        anim.save(filename, writer=animation.PillowWriter(fps=fps))
        return filename
    from IPython.display import HTML

    return HTML(anim.to_jshtml())
