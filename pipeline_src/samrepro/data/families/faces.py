"""Face recognition data (FlatFace track): insightface RecordIO or image folders, and ``.bin`` benchmarks.

DESIGN.md "Face-track details": RGB 112×112 images normalized (x/255 − 0.5)/0.5, horizontal flip as the
only training augmentation. Training identities come from ``train.rec``/``train.idx`` (``face_rec`` and
its aliases ``casia_webface``, ``ms1mv2``) or from one folder per identity (``face_folder``); the
benchmarks lfw, cfp_fp, agedb_30, cplfw, calfw are ``<name>.bin`` files in the same root.

For ρ tuning (``use_validation``) a share of every identity's images is held out of training and a
deterministic set of same/different pairs over them forms the "val" verification set, so tuning never
looks at the benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import EncodedImageDataset, FolderSource, RecordSource
from ..formats.recordio import IndexedRecordIO, RecordIOError
from ..formats.verification_bin import load_bin, read_bin_raw
from ..registry import (
    DataBundle,
    DatasetMissingError,
    DatasetSpec,
    LazyVerificationSets,
    VerificationSet,
    file_entry,
    register,
)
from ..splits import make_pairs, stratified_split, subsample
from ..transforms import FACE_MEAN, FACE_STD, BatchTransform

BENCHMARKS = ("lfw", "cfp_fp", "agedb_30", "cplfw", "calfw")
EXPECTED_IDENTITIES = {"casia_webface": 10_572, "ms1mv2": 85_742}
FACE_OPTIONS = frozenset(
    {"benchmarks", "val_pairs", "train_eval_max", "image_size", "flip", "cache", "check_identities"}
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
HOW_REC = (
    "download insightface's training set (CASIA-WebFace: faces_webface_112x112, MS1MV2: faces_emore) listed at "
    "https://github.com/deepinsight/insightface/tree/master/recognition/_datasets_ and extract it so that "
    "train.rec, train.idx and the benchmark .bin files lie directly in {root}"
)
HOW_BIN = (
    "the verification .bin files ship inside insightface's training-set archives "
    "(https://github.com/deepinsight/insightface/tree/master/recognition/_datasets_); copy {name}.bin into {root} "
    "or drop it from options.benchmarks"
)


def read_face_index(reader: IndexedRecordIO) -> tuple[np.ndarray, np.ndarray]:
    """(image keys, raw labels) of an insightface RecordIO set.

    With the header record (key 0, flag > 0, labels [N+1, N+1+num_ids]) the images are keys 1..N and the
    identity records give each identity's key range, so labels come from one header read per identity.
    Without it every record is an image and each header is read.
    """
    if 0 in reader:
        h0 = reader.read_header(0)
        if h0.flag > 0 and len(h0.labels) >= 2:
            end_img, id_lo, id_hi = int(h0.labels[0]), int(h0.labels[0]), int(h0.labels[1])
            keys = np.arange(1, end_img, dtype=np.int64)
            missing = keys[~np.isin(keys, reader.keys)]
            if missing.size:
                raise RecordIOError(
                    f"{reader.idx_path}: header record says images are keys 1..{end_img - 1} but key {missing[0]} "
                    f"is not indexed ({missing.size} missing)"
                )
            labels = np.full(keys.size, -1, dtype=np.int64)
            for ik in range(id_lo, id_hi):
                if ik not in reader:
                    break
                hi = reader.read_header(ik)
                lo, hi_end = int(hi.labels[0]), int(hi.labels[1])
                if not 1 <= lo <= hi_end <= end_img:
                    raise RecordIOError(
                        f"{reader.rec_path}: identity record {ik} has bad range [{lo}, {hi_end})"
                    )
                if hi_end > lo:
                    labels[lo - 1 : hi_end - 1] = int(reader.read_header(lo).label)
            unlabeled = np.flatnonzero(labels < 0)
            for i in unlabeled:  # no identity records (or incomplete ones): read the image headers
                labels[i] = int(reader.read_header(int(keys[i])).label)
            return keys, labels
    keys = reader.keys.copy()
    labels = np.array([int(reader.read_header(int(k)).label) for k in keys], dtype=np.int64)
    return keys, labels


def _transforms(options: dict[str, Any]) -> tuple[BatchTransform, BatchTransform]:
    train = BatchTransform(FACE_MEAN, FACE_STD, train=True, flip=bool(options.get("flip", True)))
    return train, train.eval_copy()


def _benchmark_names(options: dict[str, Any]) -> list[str]:
    names = options.get("benchmarks", list(BENCHMARKS))
    if isinstance(names, str):
        names = [names]
    return [str(n) for n in names]


def _benchmark_loaders(name: str, root: Path, options: dict[str, Any], eval_tf: BatchTransform, size: int):
    loaders = {}
    for bench in _benchmark_names(options):
        path = root / f"{bench}.bin"
        if not path.is_file():
            raise DatasetMissingError(name, path, HOW_BIN.format(name=bench, root=root))

        def load(bench: str = bench, path: Path = path) -> VerificationSet:
            images, issame = load_bin(path, size, disk_cache=bool(options.get("cache", True)))
            return VerificationSet(bench, eval_tf(images), issame)

        loaders[bench] = load
    return loaders


def face_bundle(
    name: str,
    root: Path,
    full: EncodedImageDataset,
    *,
    use_validation: bool,
    val_fraction: float,
    split_seed: int,
    options: dict[str, Any],
    info: dict[str, Any],
) -> DataBundle:
    """Shared by RecordIO and folder sets: train / train_eval / verification as docs/ARCHITECTURE.md Part B."""
    _, eval_tf = _transforms(options)
    labels = full.labels.numpy()
    num_classes = int(labels.max()) + 1 if labels.size else 0
    verification: dict[str, VerificationSet] | LazyVerificationSets
    if use_validation:
        tr, va = stratified_split(labels, val_fraction, split_seed)
        a, b, same = make_pairs(labels[va], int(options.get("val_pairs", 3000)), split_seed)
        order = np.stack([va[a], va[b]], axis=1).reshape(-1)  # pair i -> rows 2i, 2i+1
        uniq, inv = np.unique(order, return_inverse=True)
        decoded = full.load_uint8(uniq.tolist())[torch.from_numpy(inv.astype(np.int64))]
        verification = {"val": VerificationSet("val", eval_tf(decoded), torch.from_numpy(same))}
        train = full.subset(tr.tolist())
    else:
        verification = LazyVerificationSets(_benchmark_loaders(name, root, options, eval_tf, full.image_size))
        train = full
    keep = subsample(len(train), options.get("train_eval_max", 20_000))
    return DataBundle(
        name=name,
        task="face",
        num_classes=num_classes,
        input_shape=(3, full.image_size, full.image_size),
        train=train,
        train_eval=train.subset(keep.tolist(), eval_tf),
        eval=None,
        verification=verification,
        info={
            "train_size": len(train),
            "identities": num_classes,
            "benchmarks": list(verification),
            "mean": list(FACE_MEAN),
            "std": list(FACE_STD),
            **info,
        },
    )


def _encoded_bundle(
    name: str,
    root: Path,
    source: Any,
    keys: list[Any],
    labels: np.ndarray,
    fmt: str,
    *,
    use_validation: bool,
    val_fraction: float,
    split_seed: int,
    options: dict[str, Any],
) -> DataBundle:
    """A face bundle over encoded images (RecordIO records or image files): decode on access, 112×112."""
    train_tf, _ = _transforms(options)
    full = EncodedImageDataset(source, keys, labels, train_tf, int(options.get("image_size", 112)))
    return face_bundle(
        name,
        root,
        full,
        use_validation=use_validation,
        val_fraction=val_fraction,
        split_seed=split_seed,
        options=options,
        info={"format": fmt},
    )


# ------------------------------------------------------------------------------------------ RecordIO
def _open_rec(name: str, root: Path) -> IndexedRecordIO:
    for f in ("train.rec", "train.idx"):
        if not (root / f).is_file():
            raise DatasetMissingError(name, root / f, HOW_REC.format(root=root))
    return IndexedRecordIO(root / "train.rec", root / "train.idx")


def _rec_labels(
    name: str, root: Path, options: dict[str, Any]
) -> tuple[IndexedRecordIO, np.ndarray, np.ndarray]:
    reader = _open_rec(name, root)
    keys, raw = read_face_index(reader)
    if keys.size == 0:
        raise ValueError(f"dataset '{name}': {root / 'train.rec'} holds no image records")
    _, labels = np.unique(raw, return_inverse=True)
    n_ids = int(labels.max()) + 1
    expected = EXPECTED_IDENTITIES.get(name)
    if expected is not None and n_ids != expected and options.get("check_identities", True):
        raise ValueError(
            f"dataset '{name}': {root / 'train.rec'} holds {n_ids} identities but {name} has {expected}; point "
            f"root at the right set, use dataset 'face_rec' for another set, or set options.check_identities: false"
        )
    return reader, keys, labels


def _build_rec(name: str):
    def build(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
        reader, keys, labels = _rec_labels(name, root, options)
        return _encoded_bundle(
            name,
            root,
            RecordSource(reader),
            keys.tolist(),
            labels,
            "recordio",
            use_validation=use_validation,
            val_fraction=val_fraction,
            split_seed=split_seed,
            options=options,
        )

    def prepare(root: Path, download: bool) -> dict[str, Any]:
        _, keys, labels = _rec_labels(name, root, {})
        files = [file_entry(root / f, root) for f in ("train.idx", "train.rec")]
        counts: dict[str, Any] = {"images": int(keys.size), "identities": int(labels.max()) + 1}
        counts.update(_prepare_bins(name, root, files))
        return {"files": files, "counts": counts}

    return build, prepare


def _prepare_bins(name: str, root: Path, files: list[dict[str, Any]]) -> dict[str, int]:
    """Verify every benchmark .bin present; the manifest lists pair counts (absent ones are reported)."""
    counts = {}
    for bench in BENCHMARKS:
        path = root / f"{bench}.bin"
        if path.is_file():
            _, issame = read_bin_raw(path)
            counts[f"{bench}_pairs"] = len(issame)
            files.append(file_entry(path, root))
    if not counts:
        raise DatasetMissingError(name, root / "lfw.bin", HOW_BIN.format(name="lfw", root=root))
    return counts


# -------------------------------------------------------------------------------------- image folder
def scan_identity_folders(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """One sub-folder per identity (hidden folders skipped); identities in sorted order."""
    identities = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    for i, ident in enumerate(identities):
        for f in sorted((root / ident).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                paths.append(f)
                labels.append(i)
    return identities, paths, np.asarray(labels, dtype=np.int64)


def _folder_scan(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    if not root.is_dir():
        raise DatasetMissingError(
            "face_folder",
            root,
            "put one folder of aligned 112×112 face images per identity "
            "there (and the benchmark .bin files beside them)",
        )
    identities, paths, labels = scan_identity_folders(root)
    if not paths:
        raise DatasetMissingError(
            "face_folder",
            root / "<identity>/<image>.jpg",
            "put one folder of aligned 112×112 face images per identity there",
        )
    return identities, paths, labels


def _build_folder(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
    _, paths, labels = _folder_scan(root)
    return _encoded_bundle(
        "face_folder",
        root,
        FolderSource(),
        [str(p) for p in paths],
        labels,
        "image_folder",
        use_validation=use_validation,
        val_fraction=val_fraction,
        split_seed=split_seed,
        options=options,
    )


def _prepare_folder(root: Path, download: bool) -> dict[str, Any]:
    identities, paths, _ = _folder_scan(root)
    files: list[dict[str, Any]] = []
    counts: dict[str, Any] = {"images": len(paths), "identities": len(identities)}
    counts.update(_prepare_bins("face_folder", root, files))
    return {"files": files, "counts": counts}


def _register_rec(name: str) -> None:
    build, prepare = _build_rec(name)
    register(DatasetSpec(name, build, prepare, HOW_REC, FACE_OPTIONS))


_register_rec("face_rec")
_register_rec("casia_webface")
_register_rec("ms1mv2")
register(DatasetSpec("face_folder", _build_folder, _prepare_folder, "one folder per identity", FACE_OPTIONS))
