"""What a GPU run depends on, checked on the CPU: no host reads of device values in the
training loop, one precision for every architecture, a trial's objects freed when it ends.

Host reads are counted through PyTorch's dispatcher: every ``.item()``, ``bool(tensor)``
or ``int(tensor)`` on any device goes through ``aten._local_scalar_dense``, which on CUDA
is the blocking device-to-host sync.
"""

from __future__ import annotations

import itertools

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from bench.data.base import DatasetInfo
from bench.gpu_check import HostReads
from bench.models import build_model
from bench.train import NonFiniteLoss, run
from bench.vocab import RECURRENT_CELLS, TOPOLOGIES
from tests.support import compose_cfg

IMPLS = ("fused", "cell")
REG = DatasetInfo(name="t", task="regression", metric="mae", direction="minimize",
                  seq_len=7, n_features=5)


class CountHostReads(Callback):
    """Counts host reads inside each training / validation batch (step, backward, update)."""

    def __init__(self):
        self.train: list[int] = []
        self.val: list[int] = []
        self._mode: HostReads | None = None

    def _start(self):
        self._mode = HostReads()
        self._mode.__enter__()

    def _stop(self, into: list[int]):
        self._mode.__exit__(None, None, None)
        into.append(self._mode.count)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._stop(self.train)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._start()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0):
        self._stop(self.val)


@pytest.mark.parametrize(("dataset", "model"), [("synthetic", "gru"),
                                                ("synthetic_series", "lstm")])
def test_training_and_evaluation_batches_never_read_device_values(make_cfg, dataset, model):
    # SGD: Adam and RMSprop keep their step counter on the host by design and read it there
    counter = CountHostReads()
    cfg = make_cfg(f"dataset={dataset}", f"model={model}", "model.hidden_size=8",
                   "optim.name=sgd", "optim.lr=0.01", "trainer.limit_train_batches=6",
                   "trainer.limit_val_batches=3", "trainer.max_epochs=1")
    run(cfg, callbacks=[counter])
    assert counter.train == [0] * 6
    assert counter.val and set(counter.val) == {0}


def test_a_nan_loss_still_fails_the_run_and_names_the_first_bad_batch(make_cfg):
    cfg = make_cfg("dataset=synthetic", "dataset.nan_inputs=true",
                   "trainer.limit_train_batches=3")
    with pytest.raises(NonFiniteLoss, match=r"epoch 0, batch 0"):
        run(cfg)


def test_the_flag_records_the_first_non_finite_step_only():
    from bench.task import BenchTask

    task = BenchTask(torch.nn.Linear(1, 1), REG, "mae", {"name": "sgd", "lr": 0.1})
    for i, value in enumerate([1.0, 2.0, float("inf"), 3.0, float("nan")]):
        task._flag_nonfinite(torch.tensor(value), i)
    with pytest.raises(NonFiniteLoss, match="batch 2"):
        task._raise_if_nonfinite()
    task._raise_if_nonfinite()  # read once: the flag is cleared with the error


def _gpu_trainer_precision() -> str:
    return str(compose_cfg(["trainer=gpu"]).trainer.precision)


def test_the_gpu_trainer_runs_float32():
    assert _gpu_trainer_precision() == "32-true"


def _model_cfg(cell, topology, impl):
    return compose_cfg([f"model={cell}", f"model.topology={topology}", f"model.impl={impl}",
                        "model.hidden_size=6", "model.head=mlp"]).model


def _outputs_under(precision: str, models, x, lengths=None):
    """Forward passes inside Lightning's own precision context for ``precision`` on the CPU."""
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)
    with trainer.precision_plugin.forward_context():
        return [m(x, lengths) for m in models]


@pytest.mark.parametrize("precision", [_gpu_trainer_precision(), "bf16-mixed"])
def test_every_architecture_computes_in_one_precision_and_fused_equals_cell(precision):
    """Under the GPU trainer's setting, and under mixed precision chosen by hand."""
    x = torch.randn(4, 7, 5)
    lengths = torch.tensor([7, 3, 5, 1])
    dtypes: set[torch.dtype] = set()

    def record(_module, _inputs, out):
        dtypes.add(out[0].dtype)

    for cell, topology in itertools.product(RECURRENT_CELLS, TOPOLOGIES):
        torch.manual_seed(0)
        fused = build_model(_model_cfg(cell, topology, "fused"), REG).eval()
        loop = build_model(_model_cfg(cell, topology, "cell"), REG).eval()
        loop.load_state_dict(fused.state_dict())
        # inner layers too: a half-precision layer under a float32 head would hide here
        hooks = [layer.register_forward_hook(record)
                 for model in (fused, loop) for layer in model.layers]
        for lens in (None, lengths):
            out_f, out_l = _outputs_under(precision, [fused, loop], x, lens)
            dtypes |= {out_f.dtype, out_l.dtype}
            torch.testing.assert_close(out_f, out_l, rtol=1e-4, atol=1e-5,
                                       msg=f"{cell}-{topology} {precision} lengths={lens}")
        for h in hooks:
            h.remove()
    assert dtypes == {torch.float32}


def test_the_mlp_baseline_computes_in_float32_under_mixed_precision():
    mlp = build_model(compose_cfg(["model=mlp"]).model, REG)
    (out,) = _outputs_under("bf16-mixed", [mlp], torch.randn(4, 7, 5))
    assert out.dtype == torch.float32


def test_the_fp32_policy_sets_cudnn_and_matmul_alike():
    from bench.task import apply_fp32_policy

    try:
        apply_fp32_policy(True)
        assert torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        apply_fp32_policy(False)
        assert not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        apply_fp32_policy(False)
