"""Multi-field contrastive loss with in-batch caption de-duplication.

For one text field, the captions drawn for the batch are reduced to their
unique strings; each image's target is its own caption's column, so two
products with the same caption ("a photo of a t-shirt.") are never pushed
apart as negatives.  Text-to-image targets spread uniformly over every image
that shares the caption.  Fields are weighted and summed (Marqo's GCL idea).

With ``positives`` the targets are label-aware (UniCL's unified contrastive
loss, Yang et al. 2022): an image's target spreads over every column whose
caption is true of it, not only the one drawn for it, so a t-shirt drawn as
"Tshirts" is not a negative of another drawn as "a photo of a t-shirt.".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def field_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    columns: torch.Tensor,
    scale: torch.Tensor,
    positives: torch.Tensor | None = None,
):
    """Symmetric InfoNCE for one field.

    ``image_emb`` (n, d) and ``text_emb`` (u, d) are unit rows; ``columns`` (n,)
    gives each image's caption column in ``text_emb``.  ``positives`` (n, u) bool,
    if given, marks every column that describes each image (its own included).
    """
    logits = scale * image_emb @ text_emb.T
    if positives is None:
        image_to_text = F.cross_entropy(logits, columns)
        targets = F.one_hot(columns, num_classes=text_emb.shape[0]).T.float()
    else:
        pos = positives.float()
        pos[torch.arange(len(columns)), columns] = 1.0  # an image's own caption is always true of it
        image_to_text = -(pos / pos.sum(dim=1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        targets = pos.T
    targets = targets / targets.sum(dim=1, keepdim=True).clamp(min=1)
    has = targets.sum(dim=1) > 0
    text_to_image = -(targets[has] * F.log_softmax(logits.T[has], dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2
