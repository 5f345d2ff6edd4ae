"""CIFAR-10/100, Fashion-MNIST, Food101, ImageNet: fixtures in the real formats read back through build()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from formats import (
    encode_image,
    write_cifar_batches,
    write_fashion_mnist_raw,
    write_food101,
    write_image_folder,
)
from PIL import Image

import samrepro.data as data
from samrepro.data.transforms import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD


def norm(x_uint8: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(x_uint8)).float() / 255
    m = torch.tensor(mean)[:, None, None]
    s = torch.tensor(std)[:, None, None]
    return (x - m) / s


def test_cifar10_test_set_equals_the_pickled_pixels(tmp_path) -> None:
    arrays = write_cifar_batches(tmp_path, n=60, num_classes=10, n_test=20)
    b = data.build("cifar10", tmp_path, use_validation=False)
    assert (b.task, b.num_classes, b.input_shape) == ("classification", 10, (3, 32, 32))
    assert len(b.train) == 60 and len(b.eval) == 20 and b.verification == {}
    for i in (0, 7, 19):
        x, y = b.eval[i]
        assert y == int(arrays["test_y"][i])
        torch.testing.assert_close(x, norm(arrays["test_x"][i], CIFAR10_MEAN, CIFAR10_STD))
    x, y = b.train_eval[11]  # no augmentation: the exact image
    torch.testing.assert_close(x, norm(arrays["train_x"][11], CIFAR10_MEAN, CIFAR10_STD))
    assert y == int(arrays["train_y"][11])


def test_cifar_root_may_be_the_batch_folder_itself(tmp_path) -> None:
    write_cifar_batches(tmp_path, n=20, num_classes=10)
    b = data.build("cifar10", tmp_path / "cifar-10-batches-py", use_validation=False)
    assert len(b.train) == 20


def test_cifar100_fine_labels(tmp_path) -> None:
    arrays = write_cifar_batches(tmp_path, n=200, num_classes=100, n_test=100)
    b = data.build("cifar100", tmp_path, use_validation=False)
    assert b.num_classes == 100
    assert b.train.labels.tolist() == arrays["train_y"].tolist()


def test_cifar_augmentation_is_crop_flip_cutout(tmp_path) -> None:
    arrays = write_cifar_batches(tmp_path, n=20, num_classes=10)
    b = data.build("cifar10", tmp_path, use_validation=False, options={"cutout": 0})
    ref = norm(arrays["train_x"][3], CIFAR10_MEAN, CIFAR10_STD)
    pad_value = norm(np.zeros((3, 1, 1), np.uint8), CIFAR10_MEAN, CIFAR10_STD)
    padded = pad_value.expand(3, 40, 40).clone()
    padded[:, 4:36, 4:36] = ref
    torch.manual_seed(0)
    offsets = set()
    for _ in range(30):
        x, _ = b.train[3]
        found = False
        for dy in range(9):
            for dx in range(9):
                win = padded[:, dy : dy + 32, dx : dx + 32]
                if torch.allclose(x, win, atol=1e-5) or torch.allclose(x, win.flip(-1), atol=1e-5):
                    offsets.add((dy, dx))
                    found = True
                    break
            if found:
                break
        assert found, (
            "a CIFAR training image must be a (possibly mirrored) 32x32 window of the 4-padded image"
        )
    assert len(offsets) > 5
    # default Cutout(16, p=0.5): a zeroed square in about half of the images
    b = data.build("cifar10", tmp_path, use_validation=False)
    torch.manual_seed(1)
    xs, _ = b.train.get_batch(list(range(20)) * 20)
    zero_counts = (xs == 0).all(dim=1).flatten(1).sum(1)
    frac = (zero_counts > 0).float().mean().item()
    assert 0.3 < frac < 0.7 and zero_counts.max() <= 256


def test_validation_split_is_seeded_stratified_and_disjoint(tmp_path) -> None:
    write_cifar_batches(tmp_path, n=200, num_classes=10)
    b1 = data.build("cifar10", tmp_path, use_validation=True, val_fraction=0.1, split_seed=3)
    b2 = data.build("cifar10", tmp_path, use_validation=True, val_fraction=0.1, split_seed=3)
    b3 = data.build("cifar10", tmp_path, use_validation=True, val_fraction=0.1, split_seed=4)
    assert len(b1.train) == 180 and len(b1.eval) == 20
    assert torch.bincount(b1.eval.labels, minlength=10).tolist() == [2] * 10  # stratified
    assert torch.equal(b1.eval.images, b2.eval.images)
    assert not torch.equal(b1.eval.images, b3.eval.images)
    train_rows = {bytes(r.numpy()) for r in b1.train.images.flatten(1)}
    assert all(bytes(r.numpy()) not in train_rows for r in b1.eval.images.flatten(1))


def test_bad_options_and_fraction_are_value_errors(tmp_path) -> None:
    write_cifar_batches(tmp_path, n=20, num_classes=10)
    with pytest.raises(ValueError, match="cutuot"):
        data.build("cifar10", tmp_path, use_validation=False, options={"cutuot": 8})
    with pytest.raises(ValueError, match="val_fraction"):
        data.build("cifar10", tmp_path, use_validation=True, val_fraction=1.5)
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'.*cifar10"):
        data.build("cifar11", tmp_path, use_validation=False)


def test_missing_cifar_names_dataset_path_and_how(tmp_path) -> None:
    with pytest.raises(data.DatasetMissingError) as exc:
        data.build("cifar10", tmp_path, use_validation=False)
    msg = str(exc.value)
    assert "cifar10" in msg and str(tmp_path / "cifar-10-batches-py") in msg and "--download" in msg
    assert "cifar-10-python.tar.gz" in msg


def test_download_flag_is_passed_to_torchvision(tmp_path, monkeypatch) -> None:
    import torchvision

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            if not (Path(root) / "cifar-10-batches-py" / "test_batch").exists():
                write_cifar_batches(root, n=20, num_classes=10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    b = data.build("cifar10", tmp_path, use_validation=False, download=True)
    assert len(b.train) == 20
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    calls.clear()
    data.build("cifar10", tmp_path, use_validation=False, download=True)
    assert calls == []  # present data: nothing downloaded


def test_failed_download_names_dataset_path_and_how(tmp_path, monkeypatch) -> None:
    import urllib.error

    import torchvision

    class OfflineCIFAR10:  # a compute node without network access
        def __init__(self, root, train, download):
            raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    with pytest.raises(data.DatasetMissingError) as exc:
        data.build("cifar10", tmp_path, use_validation=False, download=True)
    msg = str(exc.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download failed" in msg
    assert "Name or service not known" in msg and "--out" in msg


def test_fashion_mnist_idx_files(tmp_path) -> None:
    arrays = write_fashion_mnist_raw(tmp_path, n_train=50, n_test=20)
    b = data.build("fashion_mnist", tmp_path, use_validation=False)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10
    x, y = b.eval[5]
    assert y == int(arrays["t10k_y"][5])
    torch.testing.assert_close(x, norm(arrays["t10k_x"][5][None], (0.2860,), (0.3530,)))


def test_food101_pad_to_square_resize_32(tmp_path) -> None:
    written = write_food101(
        tmp_path, ["apple_pie", "bibimbap", "churros"], train_per_class=4, test_per_class=2
    )
    b = data.build("food101", tmp_path, use_validation=False)
    assert b.num_classes == 3 and b.input_shape == (3, 32, 32)
    assert len(b.train) == 12 and len(b.eval) == 6
    assert b.eval.labels.tolist() == [lab for _, lab in written["test"]]
    # reference: decode the stored JPEG, pad to a centred black square, resize to 32
    p = tmp_path / "food-101" / "images" / "apple_pie"
    first_test = sorted(p.iterdir(), key=lambda q: int(q.stem))[4]
    with Image.open(first_test) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = max(w, h)
        canvas = Image.new("RGB", (s, s))
        canvas.paste(im, ((s - w) // 2, (s - h) // 2))
        ref = np.asarray(canvas.resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    torch.testing.assert_close(b.eval[0][0], norm(ref, IMAGENET_MEAN, IMAGENET_STD))
    assert ref[:, 0, :].max() == 0  # the top rows are padding (images are wider than tall)
    # second build reads the decoded cache
    assert any((tmp_path / "food-101" / ".samrepro_cache").iterdir())
    b2 = data.build("food101", tmp_path, use_validation=False)
    assert torch.equal(b2.eval.images, b.eval.images)


def test_imagenet_folder_layout(tmp_path) -> None:
    rng = np.random.default_rng(0)
    imgs = {c: [rng.integers(0, 256, (80, 100, 3), dtype=np.uint8) for _ in range(5)] for c in ("n01", "n02")}
    write_image_folder(tmp_path / "train", imgs, fmt="jpeg")
    write_image_folder(tmp_path / "val", {c: v[:2] for c, v in imgs.items()}, fmt="jpeg")
    b = data.build("imagenet", tmp_path, use_validation=False, options={"image_size": 64})
    assert b.num_classes == 2 and b.input_shape == (3, 64, 64)
    assert len(b.train) == 10 and len(b.eval) == 4
    x, y = b.train[7]
    assert x.shape == (3, 64, 64) and y == 1
    bv = data.build("imagenet", tmp_path, use_validation=True, val_fraction=0.2, options={"image_size": 64})
    assert len(bv.eval) == 2 and sorted(y for _, y in bv.eval.samples) == [0, 1]
    with pytest.raises(data.DatasetMissingError, match="image-net.org"):
        data.build("imagenet", tmp_path / "nothing", use_validation=False)


def test_encode_image_roundtrip() -> None:
    img = np.arange(12 * 12 * 3, dtype=np.uint8).reshape(12, 12, 3)
    import io

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_image(img)))), img)
