"""Preprocessing that belongs to the weights: how each public C3D checkpoint expects its clips made.

A network is a function of the pixels it was trained on: the same Sports-1M weights fed clips resized,
ordered or normalised another way compute other features. Each preset below is the pipeline of one
port, read from that port's own code:

``c3d-pickle``
    The ``c3d.pickle`` port (DavideA/c3d-pytorch, ``predict.py``): frames read with scikit-image (RGB),
    resized to 112×200 (height × width), the centre 112×112 taken (``[:, :, 44:44+112, :]``), pixel
    values 0–255 fed as they are (no mean, no scaling).
``c3d-pretrained``
    The ``c3d-pretrained.pth`` port (jfzhang95/pytorch-video-recognition, ``inference.py``): frames read
    with OpenCV (BGR), resized to 171×128 (width × height), cropped to ``[8:120, 30:142]`` (the centre
    112×112), then ``frame - [90.0, 98.0, 102.0]`` in B, G, R order, values 0–255, no std.
``caffe``
    The original Caffe model of Tran et al. (Sports-1M, ``c3d_sport1m``): BGR frames resized to 128×171,
    the centre 112 crop, the Sports-1M mean cube subtracted. A cube (3×16×128×171) is not a per-channel
    mean; this preset uses its per-channel average, the values the ``c3d-pretrained`` port subtracts
    (B 90, G 98, R 102), so features match the Caffe model's up to the cube's spatial variation.
``mmaction2``
    mmaction2's Sports-1M C3D configs (``configs/_base_/models/c3d_sports1m_pretrained.py`` and
    ``c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb.py``): RGB frames, short side resized to 128,
    a 112 crop, mean (104, 117, 128) and std (1, 1, 1) on 0–255 values.
``kinetics``
    This package's own default for networks trained with it from random initialisation: RGB, 128×171
    (scaled with the crop), the centre crop, torchvision's Kinetics-400 mean and std on 0–1 values.

Mean and std are written in the units of the preset's ``pixel_range`` (255: values 0–255; 1: 0–1) and in
the channel order of its output (``mean[0]`` is blue's for a BGR preset). The clip reader works in 0–1
units, so :meth:`Preset.read_kwargs` divides by the range; scaling and channel order are done by the
reader's writer while the frames are stored (no extra pass over the batch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# Kinetics-400 statistics as torchvision's video models use them (0-1 scale, RGB).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

# The resize of a 112 crop in C3D's recipe; :func:`scaled_resize` scales it with the crop.
C3D_RESIZE = (128, 171)


@dataclass(frozen=True)
class Preset:
    """One clip pipeline. ``resize``: (height, width), or an int for the short side (aspect kept);
    ``crop``: the square crop the network takes (its input size); ``mean``/``std`` in ``pixel_range``
    units and ``channels`` order."""

    name: str
    resize: tuple[int, int] | int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: str = "RGB"
    pixel_range: int = 1
    source: str = ""

    def read_kwargs(self) -> dict[str, Any]:
        """The ``read_clips`` keyword arguments (float32, centre crop) that make this preset's clips."""
        r = float(self.pixel_range)
        return {
            "size": self.resize,
            "crop": self.crop,
            "dtype": "float32",
            "mean": tuple(m / r for m in self.mean),
            "std": tuple(s / r for s in self.std),
            "channels": self.channels,
        }

    def for_crop(self, crop: int) -> Preset:
        """The same pipeline for another crop size: the resize scales with it."""
        if crop == self.crop:
            return self
        return replace(self, crop=int(crop), resize=scaled_resize(self.resize, self.crop, crop))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("mean", "std"):
            d[k] = [float(v) for v in d[k]]
        if isinstance(d["resize"], tuple):
            d["resize"] = list(d["resize"])
        d.pop("source")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        resize = d["resize"]
        return cls(
            name=str(d["name"]),
            resize=tuple(int(v) for v in resize) if isinstance(resize, (list, tuple)) else int(resize),
            crop=int(d["crop"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            channels=str(d.get("channels", "RGB")),
            pixel_range=int(d.get("pixel_range", 1)),
        )


def scaled_resize(resize: tuple[int, int] | int, crop_from: int, crop_to: int) -> tuple[int, int] | int:
    """``resize`` of a ``crop_from`` crop, scaled for a ``crop_to`` crop."""
    f = crop_to / crop_from
    if isinstance(resize, int):
        return round(resize * f)
    return (round(resize[0] * f), round(resize[1] * f))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "c3d-pickle", (112, 200), 112, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "RGB", 255,
            "DavideA/c3d-pytorch predict.py",
        ),
        Preset(
            "c3d-pretrained", C3D_RESIZE, 112, (90.0, 98.0, 102.0), (1.0, 1.0, 1.0), "BGR", 255,
            "jfzhang95/pytorch-video-recognition inference.py",
        ),
        Preset(
            "caffe", C3D_RESIZE, 112, (90.0, 98.0, 102.0), (1.0, 1.0, 1.0), "BGR", 255,
            "C3D (Tran et al. 2015), Sports-1M mean cube, per-channel",
        ),
        Preset(
            "mmaction2", 128, 112, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0), "RGB", 255,
            "mmaction2 configs/_base_/models/c3d_sports1m_pretrained.py",
        ),
        Preset("kinetics", C3D_RESIZE, 112, KINETICS_MEAN, KINETICS_STD, "RGB", 1, "torchvision video models"),
    )
}
DEFAULT_PRESET = "kinetics"

# A public state dict's layout (as models.load_c3d_weights names it) → the preset of the port that writes it.
LAYOUT_PRESETS = {"conv1…fc8": "c3d-pickle", "features.N/classifier.N": "c3d-pretrained"}


def get_preset(name: str, *, option: str = "--preprocess") -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"{option}: unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def custom_preset(
    base: Preset,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    resize: tuple[int, int] | int | None = None,
) -> Preset:
    """``base`` with ``--mean``/``--std`` (in ``base``'s pixel range and channel order) and ``--resize``
    overridden; the name says it was changed (``c3d-pickle+mean``)."""
    changed = []
    for flag, v in (("mean", mean), ("std", std)):
        if v is not None:
            v = tuple(float(x) for x in v)
            if len(v) != 3:
                raise ValueError(f"--{flag}: expected 3 values (one per channel), got {len(v)}")
            if flag == "std" and min(v) <= 0:
                raise ValueError(f"--std: every value must be positive, got {v}")
            base = replace(base, **{flag: v})
            changed.append(flag)
    if resize is not None:
        if isinstance(resize, (list, tuple)):
            if len(resize) not in (1, 2):
                raise ValueError(f"--resize: expected H W or one short side, got {len(resize)} values")
            resize = int(resize[0]) if len(resize) == 1 else (int(resize[0]), int(resize[1]))
        sides = (resize,) if isinstance(resize, int) else resize
        if min(sides) < base.crop:
            raise ValueError(f"--resize {resize}: smaller than the {base.crop} crop")
        base = replace(base, resize=resize)
        changed.append("resize")
    if changed:
        base = replace(base, name=f"{base.name.split('+')[0]}+{'+'.join(changed)}")
    return base
