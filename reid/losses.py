"""Re-ID training losses: identification (IDE) and verification (Siamese, Zheng et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identification_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy over the training identities.

    Args:
        logits: float [B, C]; labels: int64 [B] in [0, C).
        label_smoothing: in [0, 1); 0.1 is the common Re-ID choice (Szegedy et al. 2016), 0 the
            original IDE baseline.

    Returns:
        float scalar, the batch mean.
    """
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def verification_loss(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Two-way cross-entropy of the Siamese verification head (Zheng et al. 2017, eq. 4).

    Args:
        logits: float [P, 2] for P pairs, class 1 = same identity.
        same: bool [P], True for same-identity pairs.

    Returns:
        float scalar, the mean over pairs.
    """
    return F.cross_entropy(logits.float(), same.long())
