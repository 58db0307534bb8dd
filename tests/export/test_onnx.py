"""ONNX export of DRDD's networks, the ONNX Runtime stand-in OnnxDRDDNet, and ``drdd-med export``.

MONAI's DiffusionModelUNet zero-initialises its output convolutions, so an untrained network outputs zeros and any
export would "agree" with torch; every network here gets random weights first (:func:`randomize`).
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shutil
import stat
import sys

import pytest
import torch

import drdd_med
import drdd_med.export.onnx as onnx_export
from drdd_med.cli.main import main
from drdd_med.diffusion.scheduler import DRDDScheduler
from drdd_med.export import OnnxDRDDNet, export_onnx, read_metadata, verify_onnx
from drdd_med.inferers.volume import VolumeDRDDInferer
from drdd_med.networks.factory import build_drdd_net
from drdd_med.workflows.model_config import ModelConfig, load_weights, save_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

NOISE_LEVEL = 0.5
#: (noise_conditioned, network overrides): the conditioned case also has SDPA ("flash") attention at level 2 (the
#: middle block of MONAI's U-Net always has one)
CASES = {"unconditioned": (False, {}), "conditioned-attention": (True, {"attention_levels": [False, True]})}


def randomize(net: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Add Gaussian noise to every parameter so that no layer is zero (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return net


def model_config(noise_conditioned: bool, overrides: dict) -> ModelConfig:
    return ModelConfig(mode="2d", preset="tiny", noise_level=NOISE_LEVEL, noise_conditioned=noise_conditioned,
                       network_overrides=overrides)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads oversubscribe and run the tests 3-4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """case name -> ``(config, torch network, paths, measured differences)``; each case is exported once."""
    cache: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in cache:
            config = model_config(*CASES[name])
            torch.manual_seed(0)
            net = randomize(config.build_network()).eval()
            measured: dict[str, float] = {}
            paths = export_onnx(net, tmp_path_factory.mktemp("onnx"), 2, measured=measured, num_threads=1)
            cache[name] = (config, net, paths, measured)
        return cache[name]

    return get


@pytest.fixture(params=list(CASES))
def exported(request, exports):
    """One 2D tiny case (see :data:`CASES`), exported once per module."""
    return exports(request.param)


def _compare(net, onnx_net, cases, seed=1):
    """max |onnx - torch| and max |torch| over both stages and the (batch, spatial) cases."""
    generator = torch.Generator().manual_seed(seed)
    worst, scale = 0.0, 0.0
    for batch, spatial in cases:
        for stage in ("residual", "noise"):
            x = torch.randn(batch, net.target_channels, *spatial, generator=generator)
            source = torch.randn(batch, net.source_channels, *spatial, generator=generator)
            t = 1000 * torch.rand(batch, generator=generator)
            with torch.no_grad():
                expected = net(x, source, t, stage=stage)
            got = onnx_net(x, source, t, stage=stage)
            assert got.shape == expected.shape and got.dtype == torch.float32
            worst = max(worst, float((got - expected).abs().max()))
            scale = max(scale, float(expected.abs().max()))
    return worst, scale


# ----------------------------------------------------------------------------------------------- export
def test_export_writes_verified_self_describing_files(exported):
    config, net, paths, measured = exported
    folder = paths["residual"].parent
    assert sorted(p.name for p in folder.iterdir()) == ["noise.onnx", "residual.onnx"]  # no temporary files left
    assert set(measured) == {"residual", "noise"} and max(measured.values()) <= 1e-3
    for stage, path in paths.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        model = onnx.load(str(path))
        dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in list(model.graph.input) + list(model.graph.output)}
        in_channels = 2 if stage == "residual" or config.noise_conditioned else 1
        assert dims == {"x": ["batch", in_channels, "spatial_0", "spatial_1"], "t": ["batch"],
                        "y": ["batch", 1, "spatial_0", "spatial_1"]}
        assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float time input
        # every SDPA ("flash") attention block (the middle block's, plus level 2's here) exports as MatMul / Softmax
        stage_net = net.residual_net if stage == "residual" else net.noise_net
        blocks = [m for m in stage_net.modules() if getattr(m, "use_flash_attention", False)]
        assert len(blocks) == (4 if config.network_overrides else 1)
        assert sum(n.op_type == "Softmax" for n in model.graph.node) == len(blocks)


def test_metadata_round_trip(exported):
    config, net, paths, _ = exported
    for stage, path in paths.items():
        meta = read_metadata(path)
        assert meta == {"format": "drdd_med-onnx-1", "stage": stage, "spatial_dims": 2,
                        "in_channels": 2 if stage == "residual" or config.noise_conditioned else 1,
                        "source_channels": 1, "target_channels": 1, "divisor": net.divisor,
                        "noise_level": NOISE_LEVEL, "noise_conditioned": config.noise_conditioned,
                        "drdd_med_version": drdd_med.__version__, "residual_prediction": "residual"}
    onnx_net = OnnxDRDDNet(paths["residual"], paths["noise"])
    for name in ("divisor", "noise_conditioned", "source_channels", "target_channels"):
        assert getattr(onnx_net, name) == getattr(net, name)
    assert onnx_net.noise_level.dtype == torch.float64 and onnx_net.noise_level.ndim == 0
    assert float(onnx_net.noise_level) == float(net.noise_level) == NOISE_LEVEL
    assert "noise_level" in dict(onnx_net.named_buffers())


def test_onnx_matches_torch_at_new_batch_and_spatial_sizes(exported):
    """Export example: batch 2, 16x16; here batch 1 and 4 at two other (anisotropic) sizes."""
    _, net, paths, _ = exported
    onnx_net = OnnxDRDDNet.from_dir(paths["residual"].parent, intra_op_num_threads=1)
    worst, scale = _compare(net, onnx_net, [(1, (12, 20)), (4, (6, 6))])
    assert worst <= 1e-3 and scale > 0.1


def test_an_x0_residual_net_exports_and_runs_like_torch(tmp_path):
    """``residual_prediction="sample"``: the anchor subtraction is the model's, so the ONNX model must know it."""
    torch.manual_seed(0)
    config = ModelConfig(mode="2d", preset="tiny", noise_level=NOISE_LEVEL, residual_prediction="sample")
    net = randomize(config.build_network()).eval()
    paths = export_onnx(net, tmp_path, 2, num_threads=1)
    assert read_metadata(paths["residual"])["residual_prediction"] == "sample"
    onnx_net = OnnxDRDDNet.from_dir(tmp_path, intra_op_num_threads=1)
    assert onnx_net.residual_prediction == "sample"
    worst, scale = _compare(net, onnx_net, [(1, (12, 20))])
    assert worst <= 1e-3 and scale > 0.1


def test_files_written_before_residual_prediction_read_as_residual(exported):
    _, _, paths, _ = exported
    props = {p.key: p.value for p in onnx.load(str(paths["residual"])).metadata_props}
    assert props.pop("residual_prediction") == "residual"
    assert onnx_export.parse_metadata(props)["residual_prediction"] == "residual"


def test_3d_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = randomize(build_drdd_net(3, 1, 1, preset="tiny", noise_level=NOISE_LEVEL)).eval()
    measured: dict[str, float] = {}
    paths = export_onnx(net, tmp_path, 3, measured=measured, num_threads=1)
    assert max(measured.values()) <= 1e-3 and read_metadata(paths["noise"])["spatial_dims"] == 3
    onnx_net = OnnxDRDDNet.from_dir(tmp_path, intra_op_num_threads=1)
    worst, scale = _compare(net, onnx_net, [(1, (8, 12, 6)), (3, (4, 4, 10))])
    assert worst <= 1e-3 and scale > 0.1


# ----------------------------------------------------------------------------------------------- inferer
def test_volume_inferer_gives_the_same_sct_with_onnx(exported):
    config, net, paths, _ = exported
    g = torch.Generator().manual_seed(0)
    volume = torch.rand((1, 1, 16, 16, 5), generator=g) * 2 - 1
    onnx_net = OnnxDRDDNet.from_dir(paths["residual"].parent, intra_op_num_threads=1)
    expected = config.build_inferer(slice_batch=2)(volume, net)
    got = config.build_inferer(slice_batch=2)(volume, onnx_net)
    assert got.shape == expected.shape == volume.shape
    assert float((got - expected).abs().max()) <= 1e-3
    assert float((expected.abs() < 0.99).float().mean()) > 0.5 and float(expected.std()) > 0.01  # not all clipped
    with pytest.raises(ValueError, match="noise_level"):  # the stored noise level is honoured
        VolumeDRDDInferer(DRDDScheduler(noise_level=1.0))(volume, onnx_net)


def test_onnx_net_module_conventions_and_input_checks(exported):
    config, net, paths, _ = exported
    onnx_net = OnnxDRDDNet.from_dir(paths["residual"].parent, intra_op_num_threads=1)
    assert onnx_net.to("cpu", torch.float16) is onnx_net and onnx_net.noise_level.dtype == torch.float64
    assert onnx_net.to(memory_format=torch.channels_last) is onnx_net
    assert onnx_net.eval().training is False and onnx_net.train().training is True
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="needs the source"):
        onnx_net(x, None, torch.zeros(1), stage="residual")
    with pytest.raises(ValueError, match="multiples of the network's divisor"):
        onnx_net(torch.zeros(1, 1, 7, 8), torch.zeros(1, 1, 7, 8), torch.zeros(1), stage="residual")
    with pytest.raises(ValueError, match="stage must be"):
        onnx_net(x, x, torch.zeros(1), stage="both")
    with pytest.raises(ValueError, match="holds the noise network"):
        OnnxDRDDNet(paths["noise"], paths["residual"])
    with pytest.raises(TypeError, match="has no torch weights"):
        export_onnx(onnx_net, paths["residual"].parent / "again", 2)
    # channels-last and MetaTensor-free inputs, a single time value broadcast to the batch
    x2, s2 = torch.randn(2, 1, 8, 8).contiguous(memory_format=torch.channels_last), torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        expected = net(x2, s2, torch.full((2,), 300.0), stage="residual")
    assert torch.allclose(onnx_net(x2, s2, torch.tensor(300.0), stage="residual"), expected, atol=1e-3)


def test_onnx_net_refuses_files_of_two_models(exports):
    a, b = (exports(name)[2] for name in CASES)  # one unconditioned, one conditioned noise net
    with pytest.raises(ValueError, match="different models"):
        OnnxDRDDNet(a["residual"], b["noise"])


# ----------------------------------------------------------------------------------------------- failures
def test_failed_verification_raises_and_keeps_the_old_files(exports, tmp_path, monkeypatch):
    _, net, paths, _ = exports("unconditioned")
    for path in paths.values():  # a good earlier export in the output folder
        shutil.copy2(path, tmp_path / path.name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(onnx_export, "TOLERANCE", 0.0)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "residual.onnx")) + ".*not written"):
        export_onnx(randomize(copy.deepcopy(net), seed=5), tmp_path, 2, num_threads=1)  # would replace the files
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # unchanged, no temporary files left


def test_verify_detects_weights_changed_after_export(exports):
    _, net, paths, _ = exports("conditioned-attention")
    assert max(verify_onnx(net, paths, num_threads=1).values()) <= 1e-3
    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.noise_net.out[2].conv.weight.add_(0.01)
    with pytest.raises(ValueError, match=re.escape(str(paths["noise"])) + ".*differs from torch"):
        verify_onnx(changed, paths, num_threads=1)
    # the residual file still fits
    assert verify_onnx(changed, {"residual": paths["residual"]}, num_threads=1)["residual"] <= 1e-3


def test_missing_onnx_gives_an_install_hint(monkeypatch, make_tiny_bundle, tmp_path, capsys):
    """Without onnx / onnxruntime the package still imports and the error says what to install."""
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(drdd_med, "export", drdd_med.export)
    for name in [m for m in sys.modules if m == "drdd_med.export" or m.startswith("drdd_med.export.")]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module("drdd_med.export")
    net = build_drdd_net(2, 1, 1, preset="tiny")
    with pytest.raises(ImportError, match=re.escape("pip install drdd_med[export]")):
        fresh.export_onnx(net, tmp_path, 2)
    with pytest.raises(ImportError, match=re.escape("pip install drdd_med[export]")):
        fresh.OnnxDRDDNet(tmp_path / "residual.onnx", tmp_path / "noise.onnx")
    assert main(["export", "--bundle", str(make_tiny_bundle()), "--out", str(tmp_path / "out")]) == 2
    assert "pip install drdd_med[export]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_export_end_to_end(make_tiny_bundle, tmp_path, capsys):
    bundle = make_tiny_bundle(seed=3, noise_conditioned=True, noise_level=NOISE_LEVEL)
    config = ModelConfig.load(bundle)
    save_model(randomize(load_weights(config.build_network(), bundle), seed=3), config, bundle)  # non-zero outputs
    out = tmp_path / "onnx"
    assert main(["export", "--bundle", str(bundle), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, stage in zip(lines, ("residual", "noise")):
        match = re.fullmatch(rf"{stage}: +(\S+)  \(max \|onnx - torch\| = (\S+)\)", line)
        assert match and match[1] == str(out / f"{stage}.onnx") and float(match[2]) <= 1e-3
    meta = read_metadata(out / "noise.onnx")
    assert json.loads(meta["model_config"]) == config.to_dict() and meta["noise_conditioned"] is True
    # the exported networks reproduce the bundle's sCT
    net = load_weights(config.build_network(), bundle).eval()
    volume = torch.rand((1, 1, 12, 10, 3), generator=torch.Generator().manual_seed(2)) * 2 - 1
    expected = config.build_inferer()(volume, net)
    got = config.build_inferer()(volume, OnnxDRDDNet.from_dir(out, intra_op_num_threads=1))
    assert float((got - expected).abs().max()) <= 1e-3


def test_cli_export_without_verification_and_errors(make_tiny_bundle, tmp_path, capsys):
    from drdd_med.cli.export import _DEFAULT_OPSET

    assert _DEFAULT_OPSET == onnx_export.DEFAULT_OPSET  # the --help text
    bundle = make_tiny_bundle()
    assert main(["export", "--bundle", str(bundle), "--out", str(tmp_path), "--no-verify", "--opset", "18"]) == 0
    assert capsys.readouterr().out.count("(not verified)") == 2
    assert onnx.load(str(tmp_path / "residual.onnx")).opset_import[0].version == 18
    assert main(["export", "--bundle", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "Train the bundle first" in capsys.readouterr().err
