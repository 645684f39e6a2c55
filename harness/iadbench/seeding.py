"""One seed for the global generators (Python's, numpy's and torch's).

Public for plugins: a detector whose networks draw their initial weights from the
global generators calls it at the start of ``fit`` with ``ctx.seed``, so a fit is the
seed's whatever ran before it in the process. The harness calls it once per cell too.
"""

from __future__ import annotations

import random

import numpy as np


def seed_everything(seed: int) -> None:
    import torch  # lazily: the harness's light commands never import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
