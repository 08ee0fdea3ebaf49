"""The `image_folder` dataset: one folder of PNG/JPEG images per class, read with Pillow.

root/train/<class>/*.png and root/test/<class>/*.png, or root/<class>/*.png (then potstill holds
out a test split). Classes are numbered in sorted folder-name order (Python's sort, as torchvision's
ImageFolder does) unless `classes` gives the order; the teacher must use the same order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from potstill.data.readers.common import check_names, class_order, make_split, optional_import
from potstill.data.registry import DATASETS, RawData
from potstill.errors import PotstillError

SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = ("L", "RGB")


@DATASETS.register("image_folder")
def image_folder(
    root: str | None = None,
    classes: list[str] | None = None,
    mode: str | None = None,
    size: list[int] | None = None,
) -> RawData:
    """A folder of PNG/JPEG images per class (root/train/<class>/, root/test/<class>/, or root/<class>/)."""
    image_module = optional_import("PIL.Image", "Pillow", "the image_folder dataset")
    if root is None:
        raise PotstillError(
            "image_folder needs data.root: the folder holding one folder of images per class "
            "(or train/ and test/ holding those)"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise PotstillError(f"image_folder: data.root {base} is not a folder{'' if base.exists() else ' (not found)'}")
    if mode not in (None, *MODES):
        raise PotstillError(f"data.args.mode must be L (grey) or RGB, got {mode!r}")
    reader = ImageReader(image_module, mode, check_size(size))
    ignored: list[Path] = []
    splits = find_splits(base, ignored)
    found = {split: class_folders(folder, ignored) for split, folder in splits.items()}
    notes = [f"image_folder: images from {base}"]
    order = class_list(splits, found, check_names(classes), notes)
    data = {}
    for split, folder in splits.items():
        pairs = [(path, order.index(name)) for name in found[split] for path in image_files(folder / name, ignored)]
        images, labels = reader.read_all(pairs)
        data[split] = make_split(images, labels, len(order), split, str(folder))
    notes[0] += f": {', '.join(f'{len(d)} {split}' for split, d in data.items())} images in {len(order)} classes"
    notes += reader.notes() + ["uint8 images: potstill scales them from 0..255 to [0, 1]"]
    if ignored:
        entries = "entry" if len(ignored) == 1 else "entries"
        notes.append(
            f"ignored {len(ignored)} {entries} that are not .png/.jpg/.jpeg images or are hidden (e.g. {ignored[0]})"
        )
    if "test" not in data:
        notes.append("no test/ folder: potstill holds out data.test_fraction of the images as the test split")
    return RawData(data["train"], data.get("test"), notes)


def find_splits(base: Path, ignored: list[Path]) -> dict[str, Path]:
    """{"train": base/train, "test": base/test} when base holds train/, else {"train": base}."""
    layouts = "use root/train/<class>/ + root/test/<class>/, or root/<class>/ alone"
    folders = class_folders(base, ignored)
    if "train" not in folders:
        if "test" in folders:
            raise PotstillError(f"{base} has a test/ folder but no train/; {layouts} (rename a class folder 'test')")
        return {"train": base}
    others = [f for f in folders if f not in ("train", "test")]
    if others:
        raise PotstillError(f"{base} holds train/ beside other folders ({', '.join(others)}); {layouts}")
    return {"train": base / "train", **({"test": base / "test"} if "test" in folders else {})}


def class_list(
    splits: dict[str, Path], found: dict[str, list[str]], names: list[str] | None, notes: list[str]
) -> list[str]:
    """The class order: `names` when given, else the training split's sorted folder names."""
    order = names or found["train"]  # class_folders returns them sorted
    if not order:
        raise PotstillError(
            f"{splits['train']} holds no class folders; put each class's images in {splits['train']}/<class>/"
        )
    for split, present in found.items():
        extra, missing = [c for c in present if c not in order], [c for c in order if c not in present]
        if extra:
            where = "data.args.classes" if names else "train/"
            raise PotstillError(
                f"{splits[split]} has class folder(s) {', '.join(extra)} not in {where}; add them there or remove "
                "the folders"
            )
        if missing and split == "train":
            raise PotstillError(
                f"data.args.classes names {', '.join(missing)} but {splits[split]} has no folder for it; fix the "
                "name or add the folder"
            )
        if missing:
            notes.append(f"{split} split has no folder for class(es) {', '.join(missing)}")
    how = "data.args.classes" if names else "sorted folder names"
    notes.append(f"class order ({how}): {class_order(order)}; the teacher's class order must match")
    return order


def check_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise PotstillError(f"data.args.size must be [height, width] in pixels, got {size!r}")
    return int(size[0]), int(size[1])


def class_folders(folder: Path, ignored: list[Path]) -> list[str]:
    """Sorted names of the sub-folders of `folder`; an image lying beside them is refused."""
    names = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            ignored.append(entry)
        elif entry.is_dir():
            names.append(entry.name)
        elif entry.suffix.lower() in SUFFIXES:
            raise PotstillError(
                f"image {entry} lies outside a class folder; move it into {folder}/<class>/ or remove it"
            )
        else:
            ignored.append(entry)
    return names


def image_files(folder: Path, ignored: list[Path]) -> list[Path]:
    """The .png/.jpg/.jpeg files under one class folder (sub-folders included), sorted by path."""
    files = []
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file():
            (files if path.suffix.lower() in SUFFIXES and not hidden else ignored).append(path)
    if not files:
        raise PotstillError(f"class folder {folder} holds no .png/.jpg/.jpeg images; add images or remove the folder")
    return files


class ImageReader:
    """Reads images into one mode and size, refusing mixed modes or sizes unless told how to convert."""

    def __init__(self, image_module, mode: str | None, size: tuple[int, int] | None) -> None:
        self.image_module, self.mode, self.size = image_module, mode, size
        self.first: tuple[Path, str, tuple[int, int]] | None = None  # path, mode, (H, W) of the first image
        self.converted: Counter[str] = Counter()
        self.resized = 0
        self.total = 0

    def read_all(self, pairs: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, H, W) uint8 images and (N,) int64 labels."""
        images = np.stack([self.read(path) for path, _ in pairs])  # (N, H, W) or (N, H, W, 3)
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(images), np.array([label for _, label in pairs], dtype=np.int64)

    def read(self, path: Path) -> np.ndarray:
        Image = self.image_module
        try:
            with Image.open(path) as image:
                image.load()
                return self.convert(path, image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise PotstillError(
                f"cannot read image {path}: {error}; the file is damaged or not a PNG/JPEG, replace or remove it"
            ) from error

    def convert(self, path: Path, image) -> np.ndarray:
        self.total += 1
        height_width = (image.height, image.width)
        if self.first is None:
            self.first = (path, image.mode, height_width)
        first_path, first_mode, first_size = self.first
        if image.mode.startswith(("I", "F")):
            raise PotstillError(
                f"image {path} has {image.mode} pixels (16-bit or float); potstill reads 8-bit images: save it as "
                "8-bit PNG/JPEG"
            )
        if self.mode is None and image.mode != first_mode:
            raise PotstillError(
                f"images have mixed modes: {first_path} is {first_mode}, {path} is {image.mode}; set data.args.mode: "
                "L or RGB to convert them all"
            )
        if self.mode is None and image.mode not in MODES:
            raise PotstillError(
                f"image {path} has mode {image.mode}; set data.args.mode: RGB or L to convert the images"
            )
        if self.mode is not None and image.mode != self.mode:
            self.converted[image.mode] += 1
            image = image.convert(self.mode)
        if self.size is None and height_width != first_size:
            raise PotstillError(
                f"images differ in size: {first_path} is {first_size[0]}x{first_size[1]} (HxW), {path} is "
                f"{height_width[0]}x{height_width[1]}; set data.args.size: [H, W] to resize them all (Pillow, bilinear)"
            )
        if self.size is not None and height_width != self.size:
            self.resized += 1
            image = image.resize((self.size[1], self.size[0]), self.image_module.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def notes(self) -> list[str]:
        path, mode, (height, width) = self.first  # type: ignore[misc]
        notes = [f"mode {self.mode or mode} ({'data.args.mode' if self.mode else f'as the first image, {path}'})"]
        if self.converted:
            kinds = ", ".join(
                f"{count} {kind}{' (alpha dropped)' if 'A' in kind else ''}"
                for kind, count in sorted(self.converted.items())
            )
            notes.append(f"converted to {self.mode} with Pillow: {kinds}")
        if self.size is not None:
            notes.append(
                f"{self.resized} of {self.total} images resized to {self.size[0]}x{self.size[1]} (HxW) with Pillow, "
                "bilinear"
            )
        else:
            notes.append(f"images {height}x{width} (HxW)")
        return notes
