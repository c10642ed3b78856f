"""Multi-field contrastive loss with in-batch caption de-duplication.

For one text field, the captions drawn for the batch are reduced to their
unique strings; each image's target is its own caption's column, so two
products with the same caption ("a photo of a t-shirt.") are never pushed
apart as negatives.  Text-to-image targets spread uniformly over every image
that shares the caption.  Fields are weighted and summed (Marqo's GCL idea).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def field_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, columns: torch.Tensor, scale: torch.Tensor):
    """Symmetric InfoNCE for one field.

    ``image_emb`` (n, d) and ``text_emb`` (u, d) are unit rows; ``columns`` (n,)
    gives each image's caption column in ``text_emb``.
    """
    logits = scale * image_emb @ text_emb.T
    image_to_text = F.cross_entropy(logits, columns)
    targets = F.one_hot(columns, num_classes=text_emb.shape[0]).T.float()
    targets = targets / targets.sum(dim=1, keepdim=True).clamp(min=1)
    has = targets.sum(dim=1) > 0
    text_to_image = -(targets[has] * F.log_softmax(logits.T[has], dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2
