"""Small YOLO, VOC, CVAT, LabelMe and image files made on the fly for the data-tool tests."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import PIL.Image


_DISTINCT = itertools.count(1)


def image(path: Path, size: Tuple[int, int] = (64, 48), *, orientation: int = 1, mode: str = "RGB") -> Path:
    """A small image file of ``size`` (width, height) as stored; ``orientation`` an EXIF tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        im = PIL.Image.fromarray(np.full((size[1], size[0]), 30000, dtype=np.uint16))
    else:
        im = PIL.Image.new("RGB", size, (120, 60, 30))
        n = next(_DISTINCT)  # no two files the same bytes (those are copies): a corner block of its own colour
        im.paste((n * 97 % 256, n * 57 % 256, n // 256 * 31 % 256), (0, 0, min(8, size[0]), min(8, size[1])))
        im = im.convert(mode)
    kwargs = {}
    if orientation != 1:
        exif = PIL.Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    im.save(path, **kwargs)
    return path


def yolo_labels(path: Path, rows: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r + "\n" for r in rows))
    return path


def voc_xml(path: Path, filename: str, size: Optional[Tuple[int, int]],
            objects: Sequence[Tuple[str, Tuple[float, float, float, float], int]]) -> Path:
    """A VOC XML: ``objects`` as ``(name, (xmin, ymin, xmax, ymax), difficult)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
                   f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b, d in objects)
    path.write_text(f"<annotation><filename>{filename}</filename>{size_xml}{objs}</annotation>")
    return path


def load(path: Path) -> Dict:
    return json.loads(Path(path).read_text())


def boxes_by_file(data: Dict) -> Dict[str, list]:
    """``{file_name: [(category name, [x, y, w, h], iscrowd), ...]}`` of a COCO dict."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {im["id"]: im["file_name"] for im in data["images"]}
    out: Dict[str, list] = {name: [] for name in files.values()}
    for a in data["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], a["bbox"], a["iscrowd"]))
    return out


def cvat_xml(path: Path, images: Sequence[Tuple[str, Tuple[int, int], str, Sequence[str]]],
             labels: Sequence[str] = (), meta: str = "task") -> Path:
    """A "CVAT for images 1.1" annotations.xml: ``images`` as ``(name, (width, height), subset,
    [shape element, ...])``, ``labels`` declared in ``<meta><META><labels>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    declared = "".join(f"<label><name>{n}</name><color>#fa3253</color><type>any</type><attributes/></label>"
                       for n in labels)
    body = "".join(f'<image id="{i}" name="{name}" width="{w}" height="{h}"' + (f' subset="{s}"' if s else "")
                   + f'>{"".join(shapes)}</image>' for i, (name, (w, h), s, shapes) in enumerate(images))
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><{meta}>'
                    f"<labels>{declared}</labels></{meta}></meta>{body}</annotations>")
    return path


def cvat_box(label: str, x0: float, y0: float, x1: float, y1: float, rotation: float = 0) -> str:
    return (f'<box label="{label}" source="manual" occluded="0" xtl="{x0}" ytl="{y0}" xbr="{x1}" ybr="{y1}" '
            f'z_order="0"' + (f' rotation="{rotation}"' if rotation else "") + "></box>")


def ultralytics_folders(root: Path, counts: Dict[str, int], size: Tuple[int, int], row: str) -> Path:
    """``images/{split}/{i}.jpg`` + ``labels/{split}/{i}.txt`` (one ``row`` each) for ``counts`` per split."""
    for split, n in counts.items():
        for i in range(n):
            image(root / f"images/{split}/{i}.jpg", size)
            yolo_labels(root / f"labels/{split}/{i}.txt", [row])
    return root


def labelme_json(path: Path, image_path: str, size: Optional[Tuple[int, int]], shapes: Sequence[Dict],
                 image_data: Optional[str] = None) -> Path:
    """A LabelMe file as LabelMe 5 saves it (keys in its order; ``size`` (width, height))."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": "5.2.1", "flags": {},
            "shapes": [{"label": s["label"], "points": s["points"], "group_id": s.get("group_id"), "description": "",
                        "shape_type": s.get("shape_type", "rectangle"), "flags": {}} for s in shapes],
            "imagePath": image_path, "imageData": image_data,
            "imageHeight": size[1] if size else None, "imageWidth": size[0] if size else None}
    path.write_text(json.dumps(data, indent=2))
    return path


def rect(label: str, x0: float, y0: float, x1: float, y1: float, **extra: Any) -> Dict:
    """A LabelMe rectangle shape (two corners, as dragged)."""
    return {"label": label, "points": [[x0, y0], [x1, y1]], "shape_type": "rectangle", **extra}
