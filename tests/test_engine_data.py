"""The data layer on real files: the embedded slice, fabricated IDX / CIFAR pickles / PNG folders,
stratified subsets, and device batches that depend only on (seed, epoch, step)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fbt_engine.config.presets import resolve
from fbt_engine.config.schema import DataSection
from fbt_engine.data.catalog import DATASETS
from fbt_engine.data.idx import FASHION_MNIST_FILES, IdxError, read_idx, stratified_indices
from fbt_engine.data.sources import Arrays, Augmentation, DataBundle, DataError, DeviceBatches, load_data
from helpers_engine import MLP_TO_CNN, fabricate_cifar, write_idx

CPU = torch.device("cpu")


def _batches(source, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(source.epoch(epoch, start))


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


# -- stratified subsets ---------------------------------------------------------------------------

def test_stratified_indices_balance_the_classes_and_follow_the_seed():
    labels = np.repeat(np.arange(10), 100)
    idx = stratified_indices(labels, 95, seed=3)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.tolist() == [10] * 5 + [9] * 5
    assert len(set(idx.tolist())) == 95
    assert np.array_equal(idx, stratified_indices(labels, 95, seed=3))
    assert not np.array_equal(idx, stratified_indices(labels, 95, seed=4))


def test_a_class_with_too_few_samples_gives_all_it_has():
    labels = np.array([0] * 50 + [1] * 3)
    idx = stratified_indices(labels, 20, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 3]


def test_embedded_slice_and_its_stratified_subset():
    full = load_data(DataSection(), CPU, seed=0)
    assert (full.num_classes, full.img_size, full.train.num_images, full.val.num_images) == (10, 28, 5000, 1000)
    assert DATASETS["fashion_mnist_5k"].train_images == full.train.num_images  # what data.subset is checked against
    assert full.classes[0] == "T-shirt/top"
    sub = load_data(DataSection(subset=500, batch_size=64), CPU, seed=0)
    assert (sub.train.num_images, sub.val.num_images) == (500, 100)
    assert torch.bincount(sub.train.labels).tolist() == [50] * 10
    assert torch.bincount(sub.val.labels).tolist() == [10] * 10
    assert len(sub.train) == 500 // 64  # the last partial training batch is dropped
    assert len(sub.val) == 1 and sub.describe() == {"name": "fashion_mnist_5k", "classes": 10, "img_size": 28,
                                                     "train_images": 500, "val_images": 100}
    plain = load_data(DataSection(subset=500, batch_size=64, augmentation="none"), CPU, seed=0)
    (x_aug, y_aug), (x_plain, y_plain) = next(iter(sub.train.epoch(0))), next(iter(plain.train.epoch(0)))
    assert torch.equal(y_aug, y_plain) and not torch.equal(x_aug, x_plain)  # training batches are augmented
    assert torch.equal(next(iter(sub.val.epoch(0)))[0], next(iter(plain.val.epoch(0)))[0])  # evaluation is not
    # the slice is the data's, not a seed's: seeds compare on the same images, and the cached
    # teacher (whose key has no seed) was trained on the slice its students see
    other_seed = load_data(DataSection(subset=500, batch_size=64), CPU, seed=7)
    for a, b in ((sub.train, other_seed.train), (sub.val, other_seed.val)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


# -- device batches ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def arrays() -> Arrays:
    rng = np.random.default_rng(0)
    return Arrays(rng.integers(0, 256, (100, 1, 28, 28), dtype=np.uint8), np.arange(100) % 10)


def _device_batches(arrays: Arrays, seed: int = 0, train: bool = True, **data) -> DeviceBatches:
    cfg = DataSection(batch_size=16, eval_batch_size=32, **data)
    return DeviceBatches(arrays, cfg, DATASETS["fashion_mnist_5k"], 28, CPU, seed, train=train,
                         augmentation=Augmentation.of(cfg, 10))


def test_device_batches_depend_only_on_seed_epoch_and_step(arrays):
    a, b = _device_batches(arrays), _device_batches(arrays)
    assert len(a) == 100 // 16
    epoch0 = _batches(a, 0)
    assert _same(epoch0, _batches(b, 0))  # a second loader (a resumed process) draws the same batches
    assert _same(epoch0, _batches(a, 0))  # and so does a second pass
    assert not torch.equal(epoch0[0][1], _batches(a, 1)[0][1])  # another epoch, another order
    assert not _same(epoch0, _batches(_device_batches(arrays, seed=1), 0))
    x, y = epoch0[0]
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.parametrize("start", [1, 3, 5])
def test_epoch_from_a_step_is_exactly_the_tail_of_the_epoch(arrays, start):
    source = _device_batches(arrays)
    assert _same(_batches(source, 2, start), _batches(source, 2)[start:])


def test_training_batches_are_augmented_and_evaluation_batches_are_not(arrays):
    plain = _device_batches(arrays, augmentation="none")
    augmented = _device_batches(arrays)
    (x_plain, y_plain), (x_aug, y_aug) = _batches(plain, 0)[0], _batches(augmented, 0)[0]
    assert torch.equal(y_plain, y_aug) and not torch.equal(x_plain, x_aug)
    # without augmentation every training image is a stored one, normalised, with its own label,
    # and an epoch draws each image at most once
    stored = ((torch.from_numpy(arrays.images).float() / 255 - 0.2860) / 0.3530).flatten(1)
    drawn = []
    for x, y in _batches(plain, 0):
        distance = (x.flatten(1)[:, None] - stored[None]).abs().amax(-1)
        nearest = distance.argmin(1)
        assert float(distance.min(1).values.max()) < 1e-5
        assert torch.equal(torch.from_numpy(arrays.labels)[nearest], y)
        drawn += nearest.tolist()
    assert len(drawn) == len(set(drawn)) == 96
    val = _device_batches(arrays, train=False)
    assert len(val) == math.ceil(100 / 32)
    xs, ys = zip(*_batches(val, 7))
    assert torch.equal(torch.cat(ys), torch.from_numpy(arrays.labels))  # every image once, in order
    assert torch.allclose(torch.cat(xs).flatten(1), stored, atol=1e-6)


def test_resizing_to_the_configured_size(arrays):
    cfg = DataSection(batch_size=16, img_size=32)
    for aug in (None, Augmentation.of(cfg, 10)):
        source = DeviceBatches(arrays, cfg, DATASETS["fashion_mnist_5k"], 32, CPU, 0, train=True, augmentation=aug)
        assert _batches(source, 0)[0][0].shape == (16, 1, 32, 32)


def test_too_few_images_for_one_batch_is_a_data_error(arrays):
    with pytest.raises(DataError, match="data.batch_size"):
        DeviceBatches(arrays, DataSection(batch_size=128), DATASETS["fashion_mnist_5k"], 28, CPU, 0, train=True)


# -- fashion_mnist from IDX files -------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_fabricated_idx_files(tmp_path, gz):
    rng = np.random.default_rng(1)
    written = {}
    for (split, kind), stem in FASHION_MNIST_FILES.items():
        n = 60 if split == "train" else 20
        arr = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) if kind == "images" else (np.arange(n) % 10).astype(np.uint8)
        write_idx(tmp_path / (stem + (".gz" if gz else "")), arr)
        written[(split, kind)] = arr
    assert np.array_equal(read_idx(tmp_path / (FASHION_MNIST_FILES[("test", "images")] + (".gz" if gz else ""))),
                          written[("test", "images")])
    cfg = resolve(MLP_TO_CNN, ["data.name=fashion_mnist", f"data.root={tmp_path}", "data.batch_size=16",
                               "data.eval_batch_size=8"]).config.data
    bundle = load_data(cfg, CPU, seed=0)
    assert (bundle.num_classes, bundle.img_size, bundle.train.num_images, bundle.val.num_images) == (10, 28, 60, 20)
    assert bundle.classes[-1] == "Ankle boot"
    xs, ys = zip(*bundle.val.epoch(0))
    assert torch.equal(torch.cat(ys), torch.from_numpy(written[("test", "labels")].astype(np.int64)))
    expected = (torch.from_numpy(written[("test", "images")]).float()[:, None] / 255 - 0.2860) / 0.3530
    assert torch.allclose(torch.cat(xs), expected, atol=1e-6)


def test_fashion_mnist_with_a_broken_idx_file_is_a_data_error(tmp_path):
    for stem in FASHION_MNIST_FILES.values():
        (tmp_path / stem).write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"short")
    with pytest.raises(IdxError):
        read_idx(tmp_path / FASHION_MNIST_FILES[("train", "images")])
    with pytest.raises(DataError, match="data.root"):
        load_data(DataSection(name="fashion_mnist", root=str(tmp_path)), CPU, seed=0)


# -- cifar10 / cifar100 in torchvision's pickle layout ----------------------------------------------

@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_from_a_fabricated_torchvision_folder(tmp_path, classes):
    written = fabricate_cifar(tmp_path, classes, per_file=40 if classes == 10 else 200)
    n_train = len(written["train_y"])
    name = "cifar10" if classes == 10 else "cifar100"
    cfg = resolve(MLP_TO_CNN, [f"data.name={name}", f"data.root={tmp_path}", "data.batch_size=32",
                               "data.eval_batch_size=16"]).config.data
    bundle = load_data(cfg, CPU, seed=0)
    assert (bundle.num_classes, bundle.img_size, bundle.train.num_images, bundle.val.num_images) == (
        classes, 32, n_train, len(written["test_y"]))
    assert bundle.classes[:2] == (["c0", "c1"] if classes == 10 else ["f0", "f1"])
    assert torch.equal(bundle.train.images, torch.from_numpy(written["train_x"]))  # NCHW, pixel for pixel
    assert torch.equal(bundle.train.labels, torch.from_numpy(written["train_y"].astype(np.int64)))
    x, y = next(iter(bundle.train.epoch(0)))
    assert x.shape == (32, 3, 32, 32) and int(y.max()) < classes
    subset = load_data(resolve(MLP_TO_CNN, [f"data.name={name}", f"data.root={tmp_path}", "data.batch_size=8",
                                            f"data.subset={classes * 2}"]).config.data, CPU, seed=0)
    assert torch.bincount(subset.train.labels, minlength=classes).tolist() == [2] * classes


def test_cifar_folder_with_a_missing_file_is_a_data_error(tmp_path):
    fabricate_cifar(tmp_path, 10, per_file=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_data(DataSection(name="cifar10", root=str(tmp_path)), CPU, seed=0)


# -- imagefolder --------------------------------------------------------------------------------------

def _image_folder(root: Path, val_classes: tuple[str, ...] = ("cat", "dog", "eel")) -> DataBundle:
    """train/ (6 images a class) and val/ (2) of 3 classes, as a bundle: batch 4, 16 px, no workers."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for split, per_class in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog", "eel") if split == "train" else val_classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                size = (20 + 3 * i, 24)  # images of any size
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = resolve(MLP_TO_CNN, ["data.name=imagefolder", f"data.root={root}", "data.img_size=16",
                               "data.batch_size=4", "data.eval_batch_size=4", "data.workers=0"]).config.data
    return load_data(cfg, CPU, seed=0)


def test_imagefolder_from_generated_pngs(tmp_path):
    bundle = _image_folder(tmp_path)
    assert bundle.classes == ["cat", "dog", "eel"] and bundle.num_classes == 3
    assert (bundle.train.num_images, bundle.val.num_images, len(bundle.train), len(bundle.val)) == (18, 6, 4, 2)
    batches = list(bundle.train.epoch(0))
    assert len(batches) == 4 and batches[0][0].shape == (4, 3, 16, 16)
    assert torch.equal(torch.cat([y for _, y in bundle.val.epoch(0)]), torch.tensor([0, 0, 1, 1, 2, 2]))
    # the same (seed, epoch) gives the same order; start_step skips exactly the first batches
    again = list(bundle.train.epoch(0, start_step=1))
    assert [y.tolist() for _, y in again] == [y.tolist() for _, y in batches[1:]]


def test_a_class_that_val_lacks_shifts_no_label(tmp_path):
    """Each ImageFolder numbered its own folders: val/'s dog and eel were scored as cat and dog."""
    bundle = _image_folder(tmp_path, val_classes=("dog", "eel"))
    assert torch.equal(torch.cat([y for _, y in bundle.val.epoch(0)]), torch.tensor([1, 1, 2, 2]))


def test_a_val_class_that_train_has_not_is_refused(tmp_path):
    with pytest.raises(DataError, match="val has class folders that train/ has not: fox"):
        _image_folder(tmp_path, val_classes=("cat", "fox"))


def test_a_resumed_folder_epoch_reads_only_the_images_it_yields(tmp_path):
    """Resuming mid-epoch skips the done batches in the sampler: an ImageNet-sized epoch is not read
    and augmented again up to the step it stopped at."""
    train = _image_folder(tmp_path).train
    read: list[int] = []

    class Counting(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, i):
            read.append(i)
            return self.inner[i]

    train.dataset = Counting(train.dataset)
    whole = [y.tolist() for _, y in train.epoch(3)]
    read.clear()
    tail = [y.tolist() for _, y in train.epoch(3, start_step=3)]
    assert tail == whole[3:] and len(read) == 4  # one batch of 4 images, not all 16 of the epoch


def test_fbt_run_trains_on_a_fabricated_cifar100_folder(fbt_home, tmp_path):
    from conftest import run_fbt
    from helpers_engine import file_events, only_run

    fabricate_cifar(tmp_path, 100, per_file=200)
    result = run_fbt("run", MLP_TO_CNN, "--set", "method.name=scratch", "--set", "student.model=resnet10_cifar_slim",
                     "--set", "data.name=cifar100", "--set", f"data.root={tmp_path}", "--set", "data.batch_size=50",
                     "--set", "train.epochs=1", "--set", "train.log_every=1", "--quiet")
    assert result.returncode == 0, result.stderr
    events = file_events(only_run(fbt_home))
    started = events[0]
    assert started["data"] == {"name": "cifar100", "classes": 100, "img_size": 32, "train_images": 200,
                               "val_images": 200}
    assert not started["uses_teacher"] and started["loss_terms"] == ["ce"]
    assert sum(e["type"] == "step" for e in events) == 4 and events[-1]["type"] == "run_finished"


def test_every_process_gets_validation_images_to_score():
    """A process without any crashed at the end of its first evaluation, the others waiting for it."""
    cfg = resolve(MLP_TO_CNN, ["data.subset=10", "data.batch_size=2"]).config.data
    assert load_data(cfg, CPU, seed=0, rank=1, world=2).val.num_images == 1
    few = resolve(MLP_TO_CNN, ["data.subset=5", "data.batch_size=2"]).config.data
    with pytest.raises(DataError, match="data.subset: 2 processes each score a share of the validation images, and there are 1"):
        load_data(few, CPU, seed=0, rank=1, world=2)


def test_the_probe_batch_spans_a_class_sorted_folder(tmp_path):
    """Its first images were of the first classes alone (a handful of ImageNet's 1,000)."""
    x, y = _image_folder(tmp_path).val.fixed_batch(3)
    assert y.tolist() == [0, 1, 2] and x.shape == (3, 3, 16, 16)


def test_the_probe_batch_is_the_same_for_any_number_of_processes():
    cfg = resolve(MLP_TO_CNN, ["data.subset=500"]).config.data
    alone = load_data(cfg, CPU, seed=0).val.fixed_batch(16)
    for rank in (0, 1):
        shared = load_data(cfg, CPU, seed=0, rank=rank, world=2).val.fixed_batch(16)
        assert torch.equal(shared[0], alone[0]) and torch.equal(shared[1], alone[1])


def test_a_class_folder_without_images_is_named(tmp_path):
    _image_folder(tmp_path)
    (tmp_path / "train" / "fox").mkdir()
    with pytest.raises(DataError, match=f"data.root: {tmp_path / 'train'}: Found no valid file for the classes fox"):
        load_data(resolve(MLP_TO_CNN, ["data.name=imagefolder", f"data.root={tmp_path}", "data.img_size=16"]).config.data, CPU, seed=0)
