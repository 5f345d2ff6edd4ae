"""Label-smoothed cross-entropy as the authors (and davda54/sam) define it — DESIGN.md "Label smoothing".

Target: 1 − α on the true class, α/(C − 1) on every other class. torch's ``label_smoothing=ε`` instead puts
1 − ε + ε/C on the true class and ε/C elsewhere; choosing ε = α·C/(C − 1) gives exactly our target
(ε/C = α/(C−1) and 1 − ε + ε/C = 1 − α), so we call the fused kernel with that ε.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._validate import check_logits_target


def smooth_ce(logits: Tensor, target: Tensor, alpha: float = 0.1, reduction: str = "mean") -> Tensor:
    """−Σ_j t_j log q_j with t = (1 − α) on y and α/(C − 1) elsewhere, averaged over the batch."""
    check_logits_target(logits, target)
    num_classes = logits.shape[1]
    if not 0.0 <= alpha <= (num_classes - 1) / num_classes:
        raise ValueError(
            f"alpha={alpha} is outside [0, (C-1)/C] = [0, {(num_classes - 1) / num_classes:.4g}] for C={num_classes}; "
            "use a smaller label-smoothing alpha (the papers use 0.1)."
        )
    eps = alpha * num_classes / (num_classes - 1)
    return F.cross_entropy(logits, target, label_smoothing=min(eps, 1.0), reduction=reduction)
