"""The pipeline's sweep written the way the Lightning docs recommend, as a peer for benchmarks.

    python bench/lightning_peer/app.py -m optim.lr=0.01,0.1 seed=1,2,3

A LightningModule around nn.Linear(4, 3) (F.cross_entropy, SGD), a DataLoader over the
tutorial's 8 toy samples (one full batch, not shuffled), a Trainer with an MLFlowLogger that
logs ``cost`` and ``accuracy`` at every step to ``sqlite:///<cwd>/mlruns-lightning/mlflow.db``
(checkpoints under ``<cwd>/mlruns-lightning/``). Each job prints its final cost: the cost logged
at the last step (epoch ``epochs``), measured before that step's update, as the pipeline does.
Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pipeline.core.data import TOY_FEATURES, TOY_LABELS  # the same toy set


class SoftmaxRegression(L.LightningModule):
    def __init__(self, n_features: int = 4, n_classes: int = 3, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self(x)
        cost = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        self.log("cost", cost, on_step=True, on_epoch=False)
        self.log("accuracy", accuracy, on_step=True, on_epoch=False)
        return cost

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ToyDataModule(L.LightningDataModule):
    def setup(self, stage: str) -> None:
        features = torch.tensor(TOY_FEATURES, dtype=torch.float32)
        self.train_set = TensorDataset(features, torch.tensor(TOY_LABELS))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=8, shuffle=False)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    L.seed_everything(cfg.seed)
    model = SoftmaxRegression(lr=cfg.optim.lr)  # built right after seeding: the pipeline's init
    root = Path(os.getcwd()) / "mlruns-lightning"  # Hydra 1.3 keeps the cwd
    root.mkdir(exist_ok=True)
    logger = MLFlowLogger(
        experiment_name=cfg.logger.experiment_name,
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        log_model=cfg.logger.log_model,
    )
    logger.log_hyperparams({"seed": cfg.seed, "epochs": cfg.epochs})
    trainer = L.Trainer(
        max_epochs=cfg.epochs + 1,  # epochs 0..epochs, one full-batch step each
        logger=logger,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_checkpointing=cfg.trainer.enable_checkpointing,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=ToyDataModule())
    final_cost = trainer.callback_metrics["cost"].item()
    print(f"final cost lr={cfg.optim.lr} seed={cfg.seed} run_id={logger.run_id}: {final_cost:.9g}")
    return final_cost


if __name__ == "__main__":
    main()
