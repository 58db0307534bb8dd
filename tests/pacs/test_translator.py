from __future__ import annotations

import pytest

from drdd_med.pacs.config import parse_config
from drdd_med.pacs.translator import Translator, build_translator


class FixedTranslator:
    model_version = "fixed-1"

    def translate_series(self, series_dir, out_dir):
        return []


def make_fixed(config):
    return FixedTranslator()


def _config(tmp_path, **overrides):
    return parse_config({"pacs": {"host": "127.0.0.1", "port": 1, "ae_title": "PACS"},
                         "rules": {"selections": [{"conditions": {"Modality": "MR"}}]},
                         "state_dir": str(tmp_path / "state"), **overrides})


def test_build_translator_from_a_dotted_factory(tmp_path):
    translator = build_translator(_config(tmp_path, translator="test_translator:make_fixed"))
    assert isinstance(translator, Translator) and translator.model_version == "fixed-1"


@pytest.mark.parametrize("overrides, message", [
    ({}, "no 'bundle'"),
    ({"translator": "no_such_module_xyz:build"}, "cannot be imported"),
    ({"translator": "test_translator:nope"}, "cannot be imported"),
    ({"translator": "builtins:str"}, "lacks model_version"),  # the factory returns no Translator
    ({"bundle": ".", "inference": {"steps": 4}}, r"unknown option\(s\) \['steps'\]"),
])
def test_build_translator_errors_say_what_to_fix(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_translator(_config(tmp_path, **overrides))


def test_untrained_bundle_is_named(tmp_path):
    (tmp_path / "bundle").mkdir()
    with pytest.raises(ValueError, match=f"bundle {tmp_path / 'bundle'}"):
        build_translator(_config(tmp_path, bundle=str(tmp_path / "bundle"), inference={"device": "cpu"}))
