"""train.models and train.checkpoint: shapes, receptive field, factory, checkpoints round trips."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fastfill.errors import InputError  # noqa: E402
from train import checkpoint as ckpt  # noqa: E402
from train.models import (CE_HOLE_BOX, CE_PRED_BOX, CEDiscriminator, ChannelWiseFC,  # noqa: E402
                          CompletionNet, ContextEncoder, GLCICDiscriminator, build_model,
                          measure_receptive_field)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("width", [1.0, 0.25, 0.0625])
@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (100, 44)])
def test_completion_net_shapes(width, hw):
    net = CompletionNet(width).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 4, *hw))
    assert y.shape == (2, 3, *hw)
    assert 0 <= float(y.min()) and float(y.max()) <= 1


def test_completion_net_width_scales_parameters():
    n1 = sum(p.numel() for p in CompletionNet(1.0).parameters())
    n4 = sum(p.numel() for p in CompletionNet(0.25).parameters())
    assert 5.5e6 < n1 < 6.5e6  # the paper's net has ~6M weights
    assert 10 < n1 / n4 < 20


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 4, 30, 32), (1, 4, 32, 34), (4, 32, 32)])
def test_completion_net_rejects_bad_input(shape):
    with pytest.raises(ValueError):
        CompletionNet(0.0625)(torch.rand(*shape))


def test_receptive_field_from_gradients():
    rf = measure_receptive_field(CompletionNet(0.0625), 448)
    assert 290 <= rf <= 310, rf  # the paper: 307 px
    assert rf <= CompletionNet.receptive_field  # the advertised margin is never too small
    # the dilated layers are what makes it large (the paper: 99 px without them)
    plain = measure_receptive_field(CompletionNet(0.0625, dilations=(1, 1, 1, 1)), 256)
    assert 80 <= plain <= 110, plain


def test_context_encoder_geometry():
    ce = ContextEncoder().eval()
    assert ce.hole_box == CE_HOLE_BOX == (39, 39, 50, 50)
    assert ce.pred_box == CE_PRED_BOX == (32, 32, 64, 64)
    with torch.no_grad():
        z = ce.encoder(torch.rand(2, 3, 128, 128))
        y = ce(torch.rand(2, 3, 128, 128))
    assert z[0].numel() == 4000  # the 4000-unit bottleneck
    assert y.shape == (2, 3, 64, 64)
    with pytest.raises(ValueError):
        ce(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError):
        ContextEncoder(bottleneck=1000)  # not 16 x channels


def test_channelwise_fc_has_no_cross_channel_weights():
    layer = ChannelWiseFC(5, 4)
    x = torch.rand(1, 5, 4, 4)
    x2 = x.clone()
    x2[0, 2] += 1.0
    pre = lambda t: torch.einsum("bci,cio->bco", t.reshape(1, 5, 16), layer.weight)  # noqa: E731
    with torch.no_grad():
        d = (pre(x2) - pre(x)).abs().sum(-1)[0]
    assert d[2] > 0 and float(d.sum() - d[2]) == 0
    assert layer(x).shape == x.shape


def test_discriminators():
    d = CEDiscriminator(width=0.25)
    assert d(torch.rand(3, 3, 64, 64)).shape == (3,)
    g = GLCICDiscriminator()  # paper sizes: 256 global, 128 local
    assert g(torch.rand(2, 3, 256, 256), torch.rand(2, 3, 128, 128)).shape == (2,)
    assert len([m for m in g.global_d.convs if isinstance(m, torch.nn.Conv2d)]) == 6
    assert len([m for m in g.local_d.convs if isinstance(m, torch.nn.Conv2d)]) == 5
    assert g.global_d.fc.out_features == 1024 and g.fc.in_features == 2048
    with pytest.raises(ValueError):
        g(torch.rand(2, 3, 128, 128), torch.rand(2, 3, 128, 128))


def test_factory_round_trip_and_unknown_kind():
    for net in (CompletionNet(0.25), ContextEncoder(0.25), GLCICDiscriminator(64, 32, 0.125), CEDiscriminator()):
        assert build_model(net.config()).config() == net.config()
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model({"kind": "unet"})


def test_every_kind_comes_from_the_one_registry():
    """train.kinds.KINDS is the one list of model kinds: the config's paper defaults, the networks
    build_model rebuilds and the `fastfill train` argument come from it."""
    import click

    from fastfill.cli import cli
    from train.config import TrainConfig
    from train.kinds import KINDS, NETWORKS

    for name, kind in KINDS.items():
        cfg = TrainConfig(kind=name, data="x", out="y")
        assert {k: getattr(cfg, k) for k in kind.paper} == kind.paper
        assert NETWORKS[name] is kind.generator and NETWORKS[kind.discriminator.kind] is kind.discriminator
    assert set(NETWORKS) == {net.kind for k in KINDS.values() for net in (k.generator, k.discriminator)}
    train_cmd = cli.commands["train"]
    kind_arg = train_cmd.get_params(click.Context(train_cmd))[0]
    assert kind_arg.name == "kind" and list(kind_arg.type.choices) == list(KINDS)


def _tiny_pair():
    torch.manual_seed(0)
    G, D = CompletionNet(0.0625), GLCICDiscriminator(32, 16, 0.0625)
    og, od = torch.optim.Adadelta(G.parameters()), torch.optim.Adam(D.parameters(), betas=(0.5, 0.999))
    G(torch.rand(2, 4, 32, 32)).mean().backward()
    D(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16)).mean().backward()
    og.step(), od.step()
    return G, D, og, od


META = {"kind": "glcic", "mean": [0.4, 0.5, 0.6], "step": 7, "phase": "joint", "data": {"root": "x"}}


def test_checkpoint_round_trip(tmp_path):
    G, D, og, od = _tiny_pair()
    p = ckpt.save_checkpoint(tmp_path / "run" / "last", models={"G": G, "D": D},
                             optimizers={"G": og, "D": od}, meta=META)
    assert p.name == "last.safetensors"
    assert sorted(os.listdir(p.parent)) == ["last.json", "last.safetensors"]  # no temp files left
    u = os.umask(0o022)
    os.umask(u)
    for f in (p, p.with_suffix(".json")):
        assert f.stat().st_mode & 0o777 == 0o666 & ~u  # not mkstemp's 0600
    side = json.loads(p.with_suffix(".json").read_text())
    assert side["mean"] == [0.4, 0.5, 0.6] and side["config"] == G.config()
    net, meta = ckpt.load_checkpoint(p)
    assert not net.training and meta["step"] == 7 and meta["kind"] == "glcic"
    x = torch.rand(1, 4, 32, 32)
    assert torch.equal(net(x), G.eval()(x))
    # optimizer states come back exactly
    G2, D2 = CompletionNet(0.0625), GLCICDiscriminator(32, 16, 0.0625)
    og2, od2 = torch.optim.Adadelta(G2.parameters()), torch.optim.Adam(D2.parameters(), betas=(0.5, 0.999))
    ckpt.restore_training_state(p, {"G": G2, "D": D2}, {"G": og2, "D": od2})
    for a, b in ((og, og2), (od, od2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa["param_groups"] == sb["param_groups"]
        for i in sa["state"]:
            for k in sa["state"][i]:
                assert torch.equal(torch.as_tensor(sa["state"][i][k]), torch.as_tensor(sb["state"][i][k]))
    with pytest.raises(ValueError, match="does not match"):
        ckpt.restore_training_state(p, {"G": CompletionNet(0.125)}, {})


def test_checkpoint_loads_in_a_fresh_process(tmp_path):
    G, D, og, od = _tiny_pair()
    p = ckpt.save_checkpoint(tmp_path / "c", models={"G": G, "D": D}, meta=META)
    torch.manual_seed(1)
    x = torch.rand(1, 4, 32, 32)
    torch.save  # noqa: B018  (no pickle anywhere: inputs travel as raw float32 bytes)
    (tmp_path / "x.bin").write_bytes(x.numpy().tobytes())
    code = ("import numpy as np, torch, sys; from train.checkpoint import load_checkpoint;"
            "net, meta = load_checkpoint(sys.argv[1]);"
            "x = torch.from_numpy(np.fromfile(sys.argv[2], np.float32).reshape(1, 4, 32, 32));"
            "print(repr(float(net(x).double().sum())), meta['step'])")
    out = subprocess.run([sys.executable, "-c", code, str(p), str(tmp_path / "x.bin")], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    with torch.no_grad():
        assert float(out[0]) == float(G.eval()(x).double().sum()) and out[1] == "7"


def test_checkpoint_bad_files(tmp_path):
    with pytest.raises(InputError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(ValueError):
        ckpt.load_checkpoint(bad)
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="fastfill"):
        ckpt.load_checkpoint(tmp_path / "plain.safetensors")


def test_resuming_from_a_checkpoint_kept_for_export_says_which_to_resume_from(tmp_path):
    """best.safetensors keeps the generator alone: --resume from it said only "no optimizer
    state for 'G'"."""
    G = ContextEncoder(0.0625)
    p = ckpt.save_checkpoint(tmp_path / "best", models={"G": G},
                             meta={"kind": "ce", "mean": [0.5] * 3, "step": 3, "phase": "joint"})
    opt = torch.optim.Adam(G.parameters())
    with pytest.raises(InputError, match="not to resume; resume from the run's last.safetensors"):
        ckpt.restore_training_state(p, {"G": G}, {"G": opt})
