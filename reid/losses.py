"""Re-ID training losses: identification (IDE), verification (Siamese, Zheng et al. 2017) and
batch-hard triplet (Hermans et al. 2017, used by the Bag of Tricks baseline)."""

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


def batch_hard_triplet_loss(
    features: torch.Tensor, labels: torch.Tensor, *, margin: float = 0.3
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017, eq. 5), as the Bag of Tricks baseline.

    For every anchor: its farthest same-identity image and its closest other-identity image, by
    Euclidean distance, and ``max(0, d_pos - d_neg + margin)``. Anchors without a positive or a
    negative in the batch are left out (PK batches have both).

    Args:
        features: float [B, D]; labels: int64 [B].
        margin: m of the hinge.

    Returns:
        float scalar, the mean over anchors (0 when no anchor has both).
    """
    x = features.float()
    squared = x.pow(2).sum(dim=1)
    # [B, B]; clamped before the root so equal features (an image drawn twice) keep a finite
    # gradient.
    distances = (squared[:, None] + squared[None, :] - 2 * x @ x.T).clamp(min=1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positives, negatives = same & ~eye, ~same
    valid = positives.any(dim=1) & negatives.any(dim=1)
    if not valid.any():
        return x.sum() * 0.0
    hardest_positive = torch.where(positives, distances, -torch.inf).amax(dim=1)
    hardest_negative = torch.where(negatives, distances, torch.inf).amin(dim=1)
    hinge = F.relu(hardest_positive - hardest_negative + margin)
    return hinge[valid].mean()
