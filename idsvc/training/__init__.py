"""``idsvc train``: softmax + center loss on a folder of identities, from scratch or fine-tuning a checkpoint.

One module per job: ``config`` (what a run is), ``data`` (identities, cached crops, augmentation), ``prefix`` (the
frozen-stage cache that makes CPU fine-tuning affordable), ``checkpoint`` (per-epoch state and resume),
``softmax_loss`` / ``center_loss`` / ``weighted_sum`` (the losses), ``validation`` (LFW and class tightness each
epoch) and ``loop`` (the steps and epochs).
"""

from idsvc.training.config import TrainConfig
from idsvc.training.loop import train

__all__ = ["TrainConfig", "train"]
