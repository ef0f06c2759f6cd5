"""Scoring (batch inference): a scikit-learn model and a small torch model applied with
``map_batches(Model, concurrency=2, batch_size=...)`` over parquet, written back to parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import ember
import ember.data as ed

pytestmark = pytest.mark.usefixtures("ember_local")

FEATURES = ["x0", "x1", "x2", "x3"]


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("features")
    for part in range(4):
        x = rng.normal(size=(500, 4))
        frame = pd.DataFrame(x, columns=FEATURES)
        frame["id"] = np.arange(part * 500, (part + 1) * 500)
        frame["label"] = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(np.int64)
        frame.to_parquet(out / f"part-{part}.parquet")
    return str(out)


def _gpus_per_actor() -> float:
    # The same code asks for a GPU per actor where the cluster has GPUs.
    return 1.0 if ember.cluster_resources().get("GPU", 0) >= 2 else 0.0


class SklearnScorer:
    """Holds a fitted scikit-learn model; scores pandas batches."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch["prediction"] = self.model.predict(batch[FEATURES].to_numpy())
        return batch[["id", "prediction"]]


class TorchScorer:
    """Builds a small MLP from a state dict once per actor; scores numpy batches."""

    def __init__(self, state_dict: dict) -> None:
        import torch

        torch.set_num_threads(1)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        self.model.load_state_dict(state_dict)
        self.model.to(self.device).eval()

    def __call__(self, batch: dict) -> dict:
        import torch

        features = np.stack([batch[c] for c in FEATURES], axis=1).astype(np.float32)
        with torch.inference_mode():
            scores = self.model(torch.from_numpy(features).to(self.device)).squeeze(1)
        return {"id": batch["id"], "score": scores.cpu().numpy()}


def test_sklearn_model_scores_parquet_on_an_actor_pool(parquet_dir: str, tmp_path: Path) -> None:
    linear_model = pytest.importorskip("sklearn.linear_model")
    train = ed.read_parquet(parquet_dir).to_pandas()
    model = linear_model.LogisticRegression().fit(train[FEATURES].to_numpy(), train["label"])

    out = str(tmp_path / "sklearn_scores")
    ed.read_parquet(parquet_dir).map_batches(
        SklearnScorer, fn_constructor_kwargs={"model": model}, concurrency=2, batch_size=256,
        batch_format="pandas", num_gpus=_gpus_per_actor()).write_parquet(out)

    scored = ed.read_parquet(out).to_pandas().sort_values("id")
    assert len(scored) == 2000
    expected = model.predict(train.sort_values("id")[FEATURES].to_numpy())
    assert (scored["prediction"].to_numpy() == expected).all()


def test_torch_model_scores_parquet_on_an_actor_pool(parquet_dir: str, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))

    out = str(tmp_path / "torch_scores")
    ds = ed.read_parquet(parquet_dir, columns=FEATURES + ["id"]).map_batches(
        TorchScorer, fn_constructor_args=(net.state_dict(),), concurrency=2, batch_size=128,
        num_gpus=_gpus_per_actor())
    ds.write_parquet(out)

    scored = ed.read_parquet(out).to_pandas().sort_values("id")
    source = ed.read_parquet(parquet_dir).to_pandas().sort_values("id")
    with torch.inference_mode():
        expected = net(torch.tensor(source[FEATURES].to_numpy(), dtype=torch.float32)).squeeze(1)
    assert len(scored) == 2000
    np.testing.assert_allclose(scored["score"].to_numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert "MapBatches(TorchScorer)" in ds.stats()
