"""Run by tests/test_distributed.py, alone or under torchrun: fit late-fusion-dropout (MLP
encoders, no BatchNorm, index-keyed modality dropout) and write the losses and weights."""
import json
import sys

import numpy as np
import torch

import mmrobust as mm
from mmrobust import distributed

torch.set_num_threads(1)
distributed.init_from_env()
data = mm.make_synthetic({"train": 203, "val": 60, "test": 20}, {"a": 6, "b": 6}, noise=1.0, seed=0)
b_present = np.arange(203) % 10 == 0  # b is rare: some ranks' shares of a batch have no b at all
train = data["train"].with_present({"a": np.ones(203, dtype=bool), "b": b_present})
config = mm.TrainConfig(epochs=3, batch_size=32, lr=3e-3, device="cpu")
encoders = {m: mm.EncoderSpec("mlp-tiny", in_dim=6) for m in ("a", "b")}
method = mm.create_method("late-fusion-dropout", encoders=encoders, num_classes=train.num_classes, seed=0, train_config=config)
method.fit(train, data["val"])
if distributed.is_main():
    state = {k: v.flatten().tolist() for k, v in method.model_.state_dict().items()}
    with open(sys.argv[1], "w") as f:
        json.dump({"losses": [h["train_loss"] for h in method.history_], "state": state,
                   "world": distributed.world_size()}, f)
