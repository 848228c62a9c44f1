"""Sharp training photographs from Debian packages: ``data.source=debian:PKG+PKG+...``.

Debian ships natural photographs inside a few packages, among illustrations and renderings:

==============================  =================================================  ==========
package                         what is read                                       unit
==============================  =================================================  ==========
``opencv-doc``                  ``/usr/share/doc/opencv-doc/examples/data/*``      one file
``plasma-workspace-wallpapers`` ``/usr/share/wallpapers/<Name>/contents/images/``  one folder
                                (the largest of each wallpaper's resolutions)
``mate-backgrounds``            ``/usr/share/backgrounds/mate/*/*``                one file
                                (``Elephants_<size>`` variants: the largest)
``gnome-backgrounds``           ``/usr/share/backgrounds/gnome/*``                 one file
==============================  =================================================  ==========

Install them with::

    apt-get install -y opencv-doc plasma-workspace-wallpapers mate-backgrounds gnome-backgrounds

Every file is read through :func:`dhde.io.image.load_image`; which ones are photographs (and which
regions of them are sharp) is decided by :mod:`dhde.data.screening`, not here. The packages
``lomiri-wallpapers*`` and ``ukui-wallpapers`` are refused: dhde keeps them for held-out
evaluation, so a model must never see them in training.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from dhde.checks import InputTypeError

#: Image suffixes read from the packages (the same set as ``dhde.io.image.IMAGE_SUFFIXES`` covers).
_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".ppm")

#: Packages reserved for held-out evaluation: never a training source.
HELD_OUT_PACKAGES = ("lomiri-wallpapers", "ukui-wallpapers")

#: The default ``debian:`` source: every supported package.
DEFAULT_PACKAGES = ("opencv-doc", "plasma-workspace-wallpapers", "mate-backgrounds", "gnome-backgrounds")


@dataclass(frozen=True)
class Candidate:
    """One source photograph candidate.

    Attributes:
      name: stable identifier ``package/relative/path`` (the unit of the split).
      path: the file that is read (for multi-resolution wallpapers, the largest one).
      package: the Debian package that ships it.
    """

    name: str
    path: Path
    package: str


#: Files that show the same scene (stereo pairs, two views, an edited copy): one split unit.
SAME_SCENE = {
    "opencv-doc/aero3.jpg": "opencv-doc/aero1.jpg",
    "opencv-doc/aloeR.jpg": "opencv-doc/aloeL.jpg",
    "opencv-doc/ela_modified.jpg": "opencv-doc/ela_original.jpg",
    "opencv-doc/graf3.png": "opencv-doc/graf1.png",
    "opencv-doc/leuvenB.jpg": "opencv-doc/leuvenA.jpg",
    "opencv-doc/right.jpg": "opencv-doc/left.jpg",
    "opencv-doc/rubberwhale2.png": "opencv-doc/rubberwhale1.png",
    "opencv-doc/basketball2.png": "opencv-doc/basketball1.png",
    "opencv-doc/Blender_Suzanne2.jpg": "opencv-doc/Blender_Suzanne1.jpg",
}


def scene_of(name: str) -> str:
    """The split unit of a candidate: files of one scene share it (see :data:`SAME_SCENE`)."""
    if name.startswith("opencv-doc/right") and name[len("opencv-doc/right"):-4].isdigit():
        return "opencv-doc/left" + name[len("opencv-doc/right"):]  # calibration stereo pairs
    return SAME_SCENE.get(name, name)


def apt_command(packages) -> str:
    return "apt-get install -y " + " ".join(packages)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)


def _pixels(p: Path) -> int:
    m = re.match(r"(\d+)x(\d+)", p.stem)
    if m:
        return int(m.group(1)) * int(m.group(2))
    from PIL import Image

    try:
        with Image.open(p) as im:
            return im.size[0] * im.size[1]
    except OSError:
        return 0


def _opencv_doc(root: Path) -> list[Candidate]:
    folder = root / "usr/share/doc/opencv-doc/examples/data"
    return [Candidate(f"opencv-doc/{p.name}", p, "opencv-doc") for p in _images(folder)]


def _plasma(root: Path) -> list[Candidate]:
    out = []
    base = root / "usr/share/wallpapers"
    for d in sorted(base.iterdir()):
        imgs = d / "contents/images"
        if not imgs.is_dir():
            continue
        files = _images(imgs)
        if files:
            best = max(files, key=lambda p: (_pixels(p), p.name))
            out.append(Candidate(f"plasma-workspace-wallpapers/{d.name}", best, "plasma-workspace-wallpapers"))
    return out


def _mate(root: Path) -> list[Candidate]:
    base = root / "usr/share/backgrounds/mate"
    groups: dict[str, list[Path]] = {}
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        for p in _images(d):
            stem = re.sub(r"_\d+x\d+$", "", p.stem)  # Elephants, Elephants_3840x2160, ...
            groups.setdefault(f"{d.name}/{stem}", []).append(p)
    return [
        Candidate(f"mate-backgrounds/{k}", max(v, key=lambda p: (_pixels(p), p.name)), "mate-backgrounds")
        for k, v in sorted(groups.items())
    ]


def _gnome(root: Path) -> list[Candidate]:
    folder = root / "usr/share/backgrounds/gnome"
    return [Candidate(f"gnome-backgrounds/{p.name}", p, "gnome-backgrounds") for p in _images(folder)]


_READERS = {
    "opencv-doc": (_opencv_doc, "usr/share/doc/opencv-doc/examples/data"),
    "plasma-workspace-wallpapers": (_plasma, "usr/share/wallpapers"),
    "mate-backgrounds": (_mate, "usr/share/backgrounds/mate"),
    "gnome-backgrounds": (_gnome, "usr/share/backgrounds/gnome"),
}


def parse_packages(spec: str) -> tuple[str, ...]:
    """``"opencv-doc+mate-backgrounds"`` (or empty / ``"all"``) -> a tuple of package names.

    Raises:
      ValueError: a held-out package (lomiri / ukui wallpapers) or an unsupported one.
    """
    if not isinstance(spec, str):
        raise InputTypeError(f"debian source must be a string like 'opencv-doc+mate-backgrounds', got {spec!r}")
    spec = spec.strip()
    if spec in ("", "all"):
        return DEFAULT_PACKAGES
    pkgs = tuple(p.strip() for p in spec.split("+") if p.strip())
    for p in pkgs:
        if any(p.startswith(h) for h in HELD_OUT_PACKAGES):
            raise ValueError(
                f"package {p!r} is kept for held-out evaluation and is never a training source"
            )
        if p not in _READERS:
            raise ValueError(f"unsupported Debian package {p!r}: use any of {', '.join(_READERS)}")
    if len(set(pkgs)) != len(pkgs):
        raise ValueError(f"package listed twice in {spec!r}")
    return pkgs


def check_installed(spec: str = "all", root: str | Path = "/") -> tuple[str, ...]:
    """The packages of ``spec`` after checking that each is installed (cheap: no file is read).

    Raises:
      ValueError: a held-out or unsupported package, or one that is not installed; the message
        names the ``apt-get install`` line.
    """
    pkgs = parse_packages(spec)
    root = Path(root)
    missing = [p for p in pkgs if not (root / _READERS[p][1]).is_dir()]
    if missing:
        hint = "" if shutil.which("apt-get") else " (on a Debian/Ubuntu system)"
        raise ValueError(
            f"Debian package(s) not installed: {', '.join(missing)}. Install with: "
            f"{apt_command(missing)}{hint}"
        )
    return pkgs


def candidates(spec: str = "all", root: str | Path = "/") -> list[Candidate]:
    """Every candidate photograph of the packages in ``spec``, sorted by name.

    Args:
      spec: packages joined by ``+`` (see :func:`parse_packages`).
      root: file-system root the packages are installed under (tests use a fixture tree).

    Raises:
      ValueError: a package is not installed; the message names the ``apt-get install`` line.
    """
    pkgs = check_installed(spec, root)
    root = Path(root)
    out: list[Candidate] = []
    for p in pkgs:
        out.extend(_READERS[p][0](root))
    return sorted(out, key=lambda c: c.name)
