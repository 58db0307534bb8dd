"""One model for several source domains: the model config's domain list, the domain each input is translated as
(named, read from a DICOM header, or refused), the domain embedding from batch to network, and specs that name
domains for some items only."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from domain_series import write_source_series

from drdd_med import keys
from drdd_med.data.domains import SOURCE_NORMALIZE
from drdd_med.data.spec import SpecError
from drdd_med.engines import ResidualPrepareBatch, ResidualStageInferer
from drdd_med.transforms.array import window_to_unit
from drdd_med.workflows.data import paired_items, prepare_spec
from drdd_med.workflows.model_config import MODEL_CONFIG_NAME, ModelConfig
from drdd_med.workflows.predictor import SCTPredictor

AFFINE = np.diag([-3.0, -3.0, 4.0, 1.0])


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """T1w-, T2w- and CBCT-like NIfTI volumes and their DICOM series (headers showing each domain)."""
    folder = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    volumes = {"t1w": rng.gamma(2.0, 200.0, (16, 16, 4)), "t2w": rng.gamma(3.0, 100.0, (16, 16, 4)),
               "cbct": rng.uniform(-1000, 1500, (16, 16, 4))}
    paths = {}
    for domain, volume in volumes.items():
        paths[domain] = folder / f"{domain}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.float32), AFFINE), str(paths[domain]))
        write_source_series(paths[domain], folder / f"{domain}_dicom", domain)
        paths[f"{domain}_dicom"] = folder / f"{domain}_dicom"
    return paths


@pytest.fixture(scope="module")
def t1w_cbct_bundle(make_tiny_bundle) -> Path:
    return make_tiny_bundle(seed=0, model_version="drdd-unified-test", domains=["cbct", "t1w"])


# ----------------------------------------------------------------------------------------------- model config
def test_domains_are_recorded_with_their_normalisations_and_round_trip(tmp_path):
    config = ModelConfig(preset="tiny", domains=["cbct", "t1w"])
    assert config.domains == ["t1w", "cbct"]  # DOMAINS order, whatever the spec's order
    assert config.domain_normalize == {"t1w": SOURCE_NORMALIZE["t1w"], "cbct": SOURCE_NORMALIZE["cbct"]}
    assert config.source_norm_for("cbct")["type"] == "range" and config.modality_for("cbct") == "CBCT"
    assert ModelConfig.load(config.save(tmp_path)) == config


def test_a_config_file_without_domain_keys_is_a_single_domain_model(tmp_path):
    legacy = {k: v for k, v in ModelConfig(preset="tiny").to_dict().items()
              if k not in ("domains", "domain_normalize", "domain_embedding")}
    (tmp_path / MODEL_CONFIG_NAME).write_text(json.dumps(legacy))
    config = ModelConfig.load(tmp_path / MODEL_CONFIG_NAME)
    assert (config.domains, config.domain_embedding) == ([], False)
    assert config.resolve_domain(None, "x.nii.gz") is None and config.source_norm_for(None) == config.source_normalize
    with pytest.raises(ValueError, match="x.nii.gz: domain 't1w' given, but this model lists no source domains"):
        config.resolve_domain("t1w", "x.nii.gz")


@pytest.mark.parametrize("kwargs, message", [
    ({"domains": ["pd"]}, r"domains \['pd'\] are unknown"),
    ({"domains": ["t1w"], "domain_normalize": {"cbct": {"type": "range"}}}, "domain_normalize has entries"),
    ({"domains": ["t1w"], "domain_normalize": {"t1w": {"type": "zscore"}}}, "must have type"),
    ({"domain_embedding": True}, "domain_embedding needs the domains"),
    ({"domains": ["t1w", "t2w"], "domain_embedding": True, "method": "regression"}, "DRDD models only"),
])
def test_invalid_domain_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def _live_outputs(net: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises the last convolution of every block and of the U-Net; give them weights so that every
    input (the class label included) shows in the output."""
    with torch.no_grad():
        for param in net.residual_net.parameters():
            if not param.any():
                param.normal_(std=0.2)
    return net


def test_the_embedding_gives_the_residual_net_one_class_per_domain():
    torch.manual_seed(0)
    net = _live_outputs(ModelConfig(preset="tiny", domains=["t1w", "t2w", "cbct"], domain_embedding=True)
                        .build_network())
    assert net.residual_net.class_embedding.num_embeddings == 3
    assert getattr(net.noise_net, "class_embedding", None) is None  # the CT prior is shared by every domain
    x, source, t = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), torch.tensor([10.0, 10.0])
    a = net.predict_residual(x, source, t, torch.tensor([0, 0]))
    b = net.predict_residual(x, source, t, torch.tensor([0, 2]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_the_domain_label_travels_from_the_batch_to_the_residual_net():
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", domains=["t1w", "cbct"], domain_embedding=True, noise_level=0.2)
    net, scheduler = _live_outputs(config.build_network()), config.build_scheduler()
    batch = {keys.SOURCE: torch.randn(2, 1, 8, 8), keys.TARGET: torch.randn(2, 1, 8, 8),
             keys.DOMAIN_INDEX: torch.tensor([0, 1])}
    outputs = []
    for labels in ([0, 1], [1, 1]):
        batch[keys.DOMAIN_INDEX] = torch.tensor(labels)
        x0, _, args, kwargs = ResidualPrepareBatch(scheduler, generator=torch.Generator().manual_seed(0),
                                                   domain_key=keys.DOMAIN_INDEX)(batch)
        assert kwargs["domain"].tolist() == labels
        outputs.append(ResidualStageInferer(scheduler)(x0, net, *args, **kwargs))
    assert not torch.allclose(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    with pytest.raises(ValueError, match="batch has no key 'domain_index'"):
        ResidualPrepareBatch(scheduler, domain_key=keys.DOMAIN_INDEX)({k: batch[k] for k in (keys.SOURCE,
                                                                                           keys.TARGET)})


# ----------------------------------------------------------------------------------------------- predictor
def test_nifti_inputs_need_a_domain_the_model_has(t1w_cbct_bundle, sources):
    predictor = SCTPredictor.from_bundle(t1w_cbct_bundle, device="cpu", threads=1)
    with pytest.raises(ValueError, match=rf"^{sources['t2w']}: no source domain named .* translates several "
                                         r"\(t1w, cbct\); pass it: drdd-med translate --domain t1w\|cbct"):
        predictor.predict(sources["t2w"])
    with pytest.raises(ValueError, match=rf"^{sources['t2w']}: source domain 't2w' is not one this model was "
                                         r"trained on \(t1w, cbct\)"):
        predictor.predict(sources["t2w"], domain="t2w")
    result = predictor.predict(sources["cbct"], domain="cbct")
    assert result.domain == "cbct" and result.hu.shape[1:] == (16, 16, 4)
    with pytest.raises(ValueError, match="unknown domain 'pd'"):
        SCTPredictor.from_bundle(t1w_cbct_bundle, device="cpu", domain="pd")


def test_dicom_series_are_translated_as_their_header_shows(t1w_cbct_bundle, sources):
    predictor = SCTPredictor.from_bundle(t1w_cbct_bundle, device="cpu", threads=1)
    assert predictor.predict(sources["cbct_dicom"]).domain == "cbct"
    assert predictor.predict(sources["t1w_dicom"]).domain == "t1w"
    with pytest.raises(ValueError, match=rf"^{sources['t2w_dicom']}: the header of IM0001.dcm shows t2w: source "
                                         r"domain 't2w' is not one this model was trained on"):
        predictor.predict(sources["t2w_dicom"])
    # each domain has its own preprocessing: CBCT by the HU window, T1w by percentiles
    hu = np.asarray(nib.load(str(sources["cbct"])).dataobj, dtype=np.float32)
    cbct = predictor.processing("cbct")[0]({keys.IMAGE: str(sources["cbct"])})[keys.IMAGE].numpy()
    np.testing.assert_allclose(np.sort(cbct.ravel()), np.sort(window_to_unit(hu, -1024, 3071).ravel()), atol=1e-6)
    t1w = predictor.processing("t1w")[0]({keys.IMAGE: str(sources["cbct"])})[keys.IMAGE].numpy()
    assert (t1w.min(), t1w.max()) == (-1.0, 1.0) and np.abs(np.sort(t1w.ravel()) - np.sort(cbct.ravel())).max() > 0.1


def test_an_input_of_the_wrong_modality_for_its_domain_is_refused(t1w_cbct_bundle, sources):
    predictor = SCTPredictor.from_bundle(t1w_cbct_bundle, device="cpu", threads=1)
    with pytest.raises(ValueError, match="has Modality MR, but this model translates CBCT"):
        predictor.predict(sources["t1w_dicom"], domain="cbct")


def test_a_header_that_does_not_settle_the_domain_is_refused_naming_the_file(t1w_cbct_bundle, sources, tmp_path):
    import pydicom

    folder = tmp_path / "plain_mr"
    folder.mkdir()
    for path in sorted(sources["t1w_dicom"].glob("*.dcm")):  # the same series without its sequence attributes
        ds = pydicom.dcmread(path)
        for keyword in ("ScanningSequence", "SequenceVariant", "SequenceName"):
            delattr(ds, keyword)
        ds.save_as(folder / path.name)
    predictor = SCTPredictor.from_bundle(t1w_cbct_bundle, device="cpu", threads=1)
    with pytest.raises(ValueError, match=rf"{folder / 'IM0001.dcm'}: cannot tell the source domain .* the sequence "
                                         "type is unknown"):
        predictor.predict(folder)
    assert predictor.predict(folder, domain="t1w").domain == "t1w"


def test_a_model_without_domains_translates_dicom_without_reading_the_domain(make_tiny_bundle, sources):
    predictor = SCTPredictor.from_bundle(make_tiny_bundle(seed=0), device="cpu", threads=1)
    assert predictor.predict(sources["t2w_dicom"]).domain is None  # today's behaviour: any MR series
    with pytest.raises(ValueError, match="lists no source domains"):
        predictor.predict(sources["t2w"], domain="t2w")


def test_the_domain_label_reaches_the_sampler_of_an_embedding_model(sources):
    torch.manual_seed(0)
    config = ModelConfig(preset="tiny", domains=["t1w", "t2w"], domain_embedding=True)
    predictor = SCTPredictor(_live_outputs(config.build_network()), config, device="cpu", threads=1)
    as_t1w = predictor.predict(sources["t2w"], domain="t1w").hu
    as_t2w = predictor.predict(sources["t2w"], domain="t2w").hu
    assert not torch.equal(as_t1w, as_t2w)  # same image and normalisation, another class label


# ----------------------------------------------------------------------------------------------- data spec
def _spec(tmp_path, sources, items) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"training": items}))
    return path


def test_a_spec_that_names_the_domain_of_some_items_only_is_refused(tmp_path, sources):
    ct = str(sources["cbct"])
    path = _spec(tmp_path, sources, [{"source": str(sources["t1w"]), "target": ct, "domain": "t1w"},
                                     {"source": str(sources["t2w"]), "target": ct}])
    with pytest.raises(SpecError, match=r"name the source domains t1w, but training\[1\] name none"):
        prepare_spec(path)


def test_datalists_keep_the_domain_and_a_spec_without_domains_is_unchanged(tmp_path, sources):
    ct = str(sources["cbct"])
    named = prepare_spec(_spec(tmp_path, sources, [{"source": str(sources["t1w"]), "target": ct, "domain": "t1w"}]))
    assert paired_items(named)[0][keys.DOMAIN] == "t1w"
    plain = prepare_spec(_spec(tmp_path, sources, [{"source": str(sources["t1w"]), "target": ct}]))
    assert set(paired_items(plain)[0]) == {keys.SOURCE, keys.TARGET} and plain.domains() == []


def test_the_bundles_inference_config_takes_the_domain(t1w_cbct_bundle, sources, tmp_path):
    from monai.bundle import run

    config = Path(__file__).resolve().parents[2] / "bundles" / "drdd" / "inference.json"
    run("run", config_file=str(config), logging_file=False, bundle_root=str(t1w_cbct_bundle),
        input=str(sources["cbct"]), output_dir=str(tmp_path), domain="cbct", threads=1)
    assert nib.load(str(tmp_path / "cbct_sct.nii.gz")).shape == (16, 16, 4)
