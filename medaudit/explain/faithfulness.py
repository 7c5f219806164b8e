"""Faithfulness of a CAM without masks: does removing what it highlights change the prediction?

For each image, the top-k % of the map (k = 10, 20, 50 %) is replaced by a strongly blurred copy
of the image and the predicted class's probability is measured again; the same is done with a
random map of the same area and smoothness. A map that marks the evidence the model uses costs
more probability than the random one (a paired difference per image, bootstrapped by the one
engine through :func:`medaudit.metrics.localisation.mean_difference`). Blur-out is used instead of
ROAD's noisy linear imputation (``pytorch_grad_cam.metrics.road``): ROAD solves a sparse linear
system per image (seconds at 224 px on a CPU), blur-out is two pooling passes for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medaudit.metrics.localisation import mean_difference
from medaudit.models.runtime import inference_state, model_device
from medaudit.predictions import probabilities_from_logits

FAITHFULNESS_K = (0.1, 0.2, 0.5)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """A strongly blurred copy (two box filters of a quarter of the side): what "removed" pixels become."""
    k = max(3, (min(x.shape[-2:]) // 4) | 1)
    for _ in range(2):
        x = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
    return x


def _top_mask(maps: torch.Tensor, frac: float) -> torch.Tensor:
    """Boolean (B, H, W): the ``frac`` share of pixels with the highest map value, per image."""
    b = maps.shape[0]
    flat = maps.reshape(b, -1)
    n_top = max(1, int(round(frac * flat.shape[1])))
    idx = flat.topk(n_top, dim=1).indices
    out = torch.zeros_like(flat, dtype=torch.bool)
    out.scatter_(1, idx, True)
    return out.reshape(maps.shape)


def faithfulness(model, images: torch.Tensor, targets: Sequence[int], cams: np.ndarray, valid: np.ndarray,
                 grid: tuple[int, int], *, ks: Sequence[float] = FAITHFULNESS_K, task: str = "multiclass",
                 seed: int = 0, n_bootstrap: int = 1000, batch_size: int = 32) -> dict:
    """Probability the predicted class loses when the map's top-k % is blurred out, vs a random map's.

    Parameters
    ----------
    model : nn.Module
        Left as it was (run under :func:`~medaudit.models.runtime.inference_state`, inference mode).
    images : Tensor, shape (B, C, H, W)
        Normalised model inputs.
    targets : sequence of int, length B
        The explained (predicted) class of each image.
    cams : ndarray, shape (B, H, W)
        Their maps; rows with ``valid`` False are left out.
    valid : ndarray of bool, shape (B,)
    grid : (int, int)
        The CAM layer's map size: the random maps are noise at this grid, upsampled bilinearly,
        so they are as smooth as the CAM (a pixel-random mask would barely change the image).
    ks : sequence of float
        Shares of the image removed.
    task : str
        The task kind (:func:`medaudit.predictions.probabilities_from_logits`: sigmoid for multilabel).
    seed, n_bootstrap, batch_size :
        Random maps and intervals; images per forward.

    Returns
    -------
    dict
        ``{"k": [...], "n": images, "removal": "blur", "drop": {k: value object}, "random_drop": {k: ...},
        "difference": {k: ...}}`` with ``k`` as a string ("0.2"); ``drop`` is the mean of
        ``p(original) - p(top-k removed)``, ``difference`` the paired mean of ``drop - random_drop``.
    """
    keep = np.flatnonzero(np.asarray(valid, dtype=bool))
    out = {"k": [float(k) for k in ks], "n": int(len(keep)), "removal": "blur", "drop": {}, "random_drop": {},
           "difference": {}}
    if len(keep) == 0:
        for key in ("drop", "random_drop", "difference"):
            out[key] = {str(k): mean_difference(np.array([]), np.array([]), what="confidence drop") for k in ks}
        return out
    device = model_device(model)
    x = images[keep].detach().to(device)
    tgt = torch.as_tensor(np.asarray(targets)[keep], device=device)
    maps = torch.from_numpy(np.asarray(cams)[keep]).to(device)
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.rand((len(keep), 1, *grid), generator=gen).to(device)
    rand_maps = F.interpolate(noise, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    rand_maps = rand_maps + 1e-6 * torch.rand(rand_maps.shape, generator=gen).to(device)  # break ties

    def prob(batch: torch.Tensor) -> np.ndarray:
        ps = []
        for s in range(0, len(batch), batch_size):
            logits = model(batch[s:s + batch_size]).float().cpu().numpy()
            p = probabilities_from_logits(logits, task)
            ps.append(p[np.arange(len(p)), tgt[s:s + batch_size].cpu().numpy()])
        return np.concatenate(ps)

    with inference_state(model), torch.inference_mode():
        blurred = _blur(x)
        p0 = prob(x)
        for k in ks:
            drops = []
            for m in (maps, rand_maps):
                sel = _top_mask(m, k)[:, None]
                drops.append(p0 - prob(torch.where(sel, blurred, x)))
            key = str(float(k))
            zero = np.zeros_like(drops[0])
            out["drop"][key] = mean_difference(drops[0], zero, n_bootstrap=n_bootstrap, seed=seed, what="confidence drop")
            out["random_drop"][key] = mean_difference(drops[1], zero, n_bootstrap=n_bootstrap, seed=seed,
                                                      what="confidence drop of a random map")
            out["difference"][key] = mean_difference(drops[0], drops[1], n_bootstrap=n_bootstrap, seed=seed,
                                                     what="drop minus random drop")
    return out
