"""The model zoo: every published D-FINE checkpoint and backbone as a named, typed entry.

Look entries up with :func:`get` and list them with :func:`list_entries`; download one
with :func:`dfine.hub.fetch_weights`. Nothing here touches the network.

The numbers are those published with the checkpoints (arXiv 2410.13842 and its model zoo):
COCO val2017 AP, Objects365 AP (full validation set and its first 5000 images),
parameters in millions, GFLOPs and T4 TensorRT fp16 latency at batch size 1.

Class indices. A COCO (and Objects365+COCO) checkpoint predicts 80 labels, label ``i``
being ``class_names[i]``. An Objects365 checkpoint predicts 366 labels indexed by the
Objects365 category id (1..365); label 0 is unused, so label ``i`` is
``class_names[i - 1]`` (``label_offset`` is 1). Use :meth:`ZooEntry.class_name`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from types import MappingProxyType
from typing import Literal, Mapping, Optional, Tuple

from dfine.data.mscoco import MSCOCO_NAMES
from dfine.errors import DfineError

__all__ = [
    "BASE_URL",
    "COCO_CLASSES",
    "OBJ365_CLASSES",
    "UnknownEntryError",
    "ZooEntry",
    "get",
    "list_entries",
    "names",
]

BASE_URL = "https://github.com/Peterande/storage/releases/download/dfinev1.0"

Kind = Literal["detector", "backbone"]
Dataset = Literal["coco", "obj365", "obj2coco", "imagenet"]

#: The 80 COCO detection classes, in the order of the model's labels 0..79.
COCO_CLASSES: Tuple[str, ...] = MSCOCO_NAMES

#: The 365 Objects365 (v2) classes in category-id order (id ``i + 1`` is ``OBJ365_CLASSES[i]``).
#: Display names: the spelling slips of the annotation files ("Moniter/TV", "Bakset", ...)
#: are corrected and trailing spaces dropped.
OBJ365_CLASSES: Tuple[str, ...] = (
    'Person', 'Sneakers', 'Chair', 'Other Shoes', 'Hat', 'Car', 'Lamp', 'Glasses', 'Bottle',
    'Desk', 'Cup', 'Street Lights', 'Cabinet/shelf', 'Handbag/Satchel', 'Bracelet', 'Plate',
    'Picture/Frame', 'Helmet', 'Book', 'Gloves', 'Storage box', 'Boat', 'Leather Shoes',
    'Flower', 'Bench', 'Potted Plant', 'Bowl/Basin', 'Flag', 'Pillow', 'Boots', 'Vase',
    'Microphone', 'Necklace', 'Ring', 'SUV', 'Wine Glass', 'Belt', 'Monitor/TV', 'Backpack',
    'Umbrella', 'Traffic Light', 'Speaker', 'Watch', 'Tie', 'Trash bin Can', 'Slippers',
    'Bicycle', 'Stool', 'Barrel/bucket', 'Van', 'Couch', 'Sandals', 'Basket', 'Drum',
    'Pen/Pencil', 'Bus', 'Wild Bird', 'High Heels', 'Motorcycle', 'Guitar', 'Carpet',
    'Cell Phone', 'Bread', 'Camera', 'Canned', 'Truck', 'Traffic cone', 'Cymbal', 'Lifesaver',
    'Towel', 'Stuffed Toy', 'Candle', 'Sailboat', 'Laptop', 'Awning', 'Bed', 'Faucet', 'Tent',
    'Horse', 'Mirror', 'Power outlet', 'Sink', 'Apple', 'Air Conditioner', 'Knife',
    'Hockey Stick', 'Paddle', 'Pickup Truck', 'Fork', 'Traffic Sign', 'Balloon', 'Tripod',
    'Dog', 'Spoon', 'Clock', 'Pot', 'Cow', 'Cake', 'Dining Table', 'Sheep', 'Hanger',
    'Blackboard/Whiteboard', 'Napkin', 'Other Fish', 'Orange/Tangerine', 'Toiletry', 'Keyboard',
    'Tomato', 'Lantern', 'Machinery Vehicle', 'Fan', 'Green Vegetables', 'Banana',
    'Baseball Glove', 'Airplane', 'Mouse', 'Train', 'Pumpkin', 'Soccer', 'Skiboard', 'Luggage',
    'Nightstand', 'Tea pot', 'Telephone', 'Trolley', 'Head Phone', 'Sports Car', 'Stop Sign',
    'Dessert', 'Scooter', 'Stroller', 'Crane', 'Remote', 'Refrigerator', 'Oven', 'Lemon',
    'Duck', 'Baseball Bat', 'Surveillance Camera', 'Cat', 'Jug', 'Broccoli', 'Piano', 'Pizza',
    'Elephant', 'Skateboard', 'Surfboard', 'Gun', 'Skating and Skiing Shoes', 'Gas Stove',
    'Donut', 'Bow Tie', 'Carrot', 'Toilet', 'Kite', 'Strawberry', 'Other Balls', 'Shovel',
    'Pepper', 'Computer Box', 'Toilet Paper', 'Cleaning Products', 'Chopsticks', 'Microwave',
    'Pigeon', 'Baseball', 'Cutting/chopping Board', 'Coffee Table', 'Side Table', 'Scissors',
    'Marker', 'Pie', 'Ladder', 'Snowboard', 'Cookies', 'Radiator', 'Fire Hydrant', 'Basketball',
    'Zebra', 'Grape', 'Giraffe', 'Potato', 'Sausage', 'Tricycle', 'Violin', 'Egg',
    'Fire Extinguisher', 'Candy', 'Fire Truck', 'Billiards', 'Converter', 'Bathtub',
    'Wheelchair', 'Golf Club', 'Briefcase', 'Cucumber', 'Cigar/Cigarette', 'Paint Brush',
    'Pear', 'Heavy Truck', 'Hamburger', 'Extractor', 'Extension Cord', 'Tong', 'Tennis Racket',
    'Folder', 'American Football', 'Earphone', 'Mask', 'Kettle', 'Tennis', 'Ship', 'Swing',
    'Coffee Machine', 'Slide', 'Carriage', 'Onion', 'Green Beans', 'Projector', 'Frisbee',
    'Washing Machine/Drying Machine', 'Chicken', 'Printer', 'Watermelon', 'Saxophone', 'Tissue',
    'Toothbrush', 'Ice Cream', 'Hot Air Balloon', 'Cello', 'French Fries', 'Scale', 'Trophy',
    'Cabbage', 'Hot Dog', 'Blender', 'Peach', 'Rice', 'Wallet/Purse', 'Volleyball', 'Deer',
    'Goose', 'Tape', 'Tablet', 'Cosmetics', 'Trumpet', 'Pineapple', 'Golf Ball', 'Ambulance',
    'Parking Meter', 'Mango', 'Key', 'Hurdle', 'Fishing Rod', 'Medal', 'Flute', 'Brush',
    'Penguin', 'Megaphone', 'Corn', 'Lettuce', 'Garlic', 'Swan', 'Helicopter', 'Green Onion',
    'Sandwich', 'Nuts', 'Speed Limit Sign', 'Induction Cooker', 'Broom', 'Trombone', 'Plum',
    'Rickshaw', 'Goldfish', 'Kiwi Fruit', 'Router/Modem', 'Poker Card', 'Toaster', 'Shrimp',
    'Sushi', 'Cheese', 'Notepaper', 'Cherry', 'Pliers', 'CD', 'Pasta', 'Hammer', 'Cue',
    'Avocado', 'Hami Melon', 'Flask', 'Mushroom', 'Screwdriver', 'Soap', 'Recorder', 'Bear',
    'Eggplant', 'Board Eraser', 'Coconut', 'Tape Measure/Ruler', 'Pig', 'Showerhead', 'Globe',
    'Chips', 'Steak', 'Crosswalk Sign', 'Stapler', 'Camel', 'Formula 1', 'Pomegranate',
    'Dishwasher', 'Crab', 'Hoverboard', 'Meatball', 'Rice Cooker', 'Tuba', 'Calculator',
    'Papaya', 'Antelope', 'Parrot', 'Seal', 'Butterfly', 'Dumbbell', 'Donkey', 'Lion', 'Urinal',
    'Dolphin', 'Electric Drill', 'Hair Dryer', 'Egg Tart', 'Jellyfish', 'Treadmill', 'Lighter',
    'Grapefruit', 'Game Board', 'Mop', 'Radish', 'Baozi', 'Target', 'French', 'Spring Rolls',
    'Monkey', 'Rabbit', 'Pencil Case', 'Yak', 'Red Cabbage', 'Binoculars', 'Asparagus',
    'Barbell', 'Scallop', 'Noodles', 'Comb', 'Dumpling', 'Oyster', 'Table Tennis Paddle',
    'Cosmetics Brush/Eyeliner Pencil', 'Chainsaw', 'Eraser', 'Lobster', 'Durian', 'Okra',
    'Lipstick', 'Cosmetics Mirror', 'Curling', 'Table Tennis',
)  # fmt: skip


class UnknownEntryError(DfineError, LookupError):
    """No zoo entry has the name asked for."""


@dataclass(frozen=True)
class ZooEntry:
    """One published weights file and what is known about it.

    ``model`` is the network the file loads into (``dfine_l``, or ``hgnetv2_b4`` for a
    backbone), ``sizes`` the D-FINE sizes it serves (a backbone serves several), and
    ``sha256`` the file's digest when known (``None``: the first download records it).
    """

    name: str
    kind: Kind
    dataset: Dataset
    file_name: str
    url: str
    model: str
    sizes: Tuple[str, ...]
    backbone: str
    num_classes: Optional[int] = None
    class_names: Tuple[str, ...] = dataclass_field(default=(), repr=False)
    label_offset: int = 0
    coco_ap: Optional[float] = None
    obj365_ap: Optional[float] = None
    obj365_ap5000: Optional[float] = None
    params_m: Optional[float] = None
    gflops: Optional[float] = None
    latency_ms: Optional[float] = None
    config: Optional[str] = None
    sha256: Optional[str] = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.url.rsplit("/", 1)[-1] != self.file_name:
            raise ValueError(f"{self.name}: url {self.url} does not end in {self.file_name}")
        if self.sha256 is not None and not _is_sha256(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits")
        if self.num_classes is not None:
            if len(self.class_names) + self.label_offset != self.num_classes:
                raise ValueError(f"{self.name}: {len(self.class_names)} class names "
                                 f"+ offset {self.label_offset} != {self.num_classes} classes")

    def class_name(self, label: int) -> str:
        """The class name of the model's output ``label`` (see the module docstring)."""
        if not self.class_names:
            raise DfineError(f"{self.name} is a {self.kind} without class names")
        index = label - self.label_offset
        if not 0 <= index < len(self.class_names):
            raise DfineError(f"{self.name} has no class for label {label}: its labels run "
                             f"from {self.label_offset} to {self.label_offset + len(self.class_names) - 1}")
        return self.class_names[index]


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


_SIZE_BACKBONE = {"n": "B0", "s": "B0", "m": "B2", "l": "B4", "x": "B5"}
# Published params (M), GFLOPs and T4 latency (ms) per size; the same for every dataset.
_SIZE_COST = {
    "n": (4.0, 7.0, 2.12),
    "s": (10.0, 25.0, 3.49),
    "m": (19.0, 57.0, 5.62),
    "l": (31.0, 91.0, 8.07),
    "x": (62.0, 202.0, 12.89),
}
_DATASET_CLASSES = {"coco": COCO_CLASSES, "obj2coco": COCO_CLASSES, "obj365": OBJ365_CLASSES}


def _detector(size: str, dataset: Dataset, *, suffix: str = "", file_stem: Optional[str] = None,
              note: str = "", **scores: Optional[float]) -> ZooEntry:
    """The entry ``dfine_{size}_{dataset}{suffix}``, stored as ``{file_stem}.pth``."""
    name = f"dfine_{size}_{dataset}{suffix}"
    file_name = f"{file_stem or name}.pth"
    classes = _DATASET_CLASSES[dataset]
    offset = 1 if dataset == "obj365" else 0
    params, gflops, latency = _SIZE_COST[size]
    return ZooEntry(
        name=name, kind="detector", dataset=dataset, file_name=file_name,
        url=f"{BASE_URL}/{file_name}", model=f"dfine_{size}", sizes=(f"dfine_{size}",),
        backbone=_SIZE_BACKBONE[size], num_classes=len(classes) + offset, class_names=classes,
        label_offset=offset, params_m=params, gflops=gflops, latency_ms=latency,
        config=f"dfine_hgnetv2_{size}_{dataset}", note=note, **scores,
    )


def _backbone(variant: str, sizes: str) -> ZooEntry:
    """The ImageNet-pretrained (stage 1) HGNetv2 ``variant`` serving D-FINE ``sizes``."""
    file_name = f"PPHGNetV2_{variant}_stage1.pth"
    return ZooEntry(
        name=file_name[: -len(".pth")], kind="backbone", dataset="imagenet",
        file_name=file_name, url=f"{BASE_URL}/{file_name}", model=f"hgnetv2_{variant.lower()}",
        sizes=tuple(f"dfine_{s}" for s in sizes), backbone=variant,
        note="ImageNet-pretrained backbone weights (stage 1), used to start training",
    )


_E25 = "Objects365 pretraining re-run and extended to 25 epochs"
_ENTRIES: Tuple[ZooEntry, ...] = (
    _detector("n", "coco", coco_ap=42.8),
    _detector("s", "coco", coco_ap=48.5),
    _detector("m", "coco", coco_ap=52.3),
    _detector("l", "coco", coco_ap=54.0),
    _detector("x", "coco", coco_ap=55.8),
    _detector("s", "obj365", obj365_ap=31.0, obj365_ap5000=30.5),
    _detector("m", "obj365", obj365_ap=38.6, obj365_ap5000=37.4),
    _detector("l", "obj365", obj365_ap5000=40.6),
    _detector("l", "obj365", suffix="_e25", note=_E25, obj365_ap=44.7, obj365_ap5000=42.6),
    _detector("x", "obj365", obj365_ap=49.5, obj365_ap5000=46.5),
    _detector("s", "obj2coco", coco_ap=50.7),
    _detector("m", "obj2coco", coco_ap=55.1),
    _detector("l", "obj2coco", file_stem="dfine_l_obj2coco_e25", coco_ap=57.3,
              note="the published L Objects365+COCO checkpoint; the same file as dfine_l_obj2coco_e25"),
    _detector("l", "obj2coco", suffix="_e25", coco_ap=57.3,
              note="Objects365+COCO from the 25-epoch (E25) Objects365 pretraining"),
    _detector("x", "obj2coco", coco_ap=59.3),
    _backbone("B0", "ns"),
    _backbone("B2", "m"),
    _backbone("B4", "l"),
    _backbone("B5", "x"),
)
_BY_KEY: Mapping[str, ZooEntry] = MappingProxyType({e.name.lower(): e for e in _ENTRIES})


def names() -> Tuple[str, ...]:
    """The names of all zoo entries, in zoo order."""
    return tuple(e.name for e in _ENTRIES)


def list_entries(kind: Optional[Kind] = None, dataset: Optional[Dataset] = None) -> Tuple[ZooEntry, ...]:
    """All zoo entries, optionally only those of one ``kind`` and/or ``dataset``."""
    return tuple(e for e in _ENTRIES
                 if (kind is None or e.kind == kind) and (dataset is None or e.dataset == dataset))


def get(name: str) -> ZooEntry:
    """The zoo entry called ``name`` (case-insensitive); a one-line error if there is none."""
    entry = _BY_KEY.get(name.strip().lower()) if isinstance(name, str) else None
    if entry is None:
        close = difflib.get_close_matches(str(name).lower(), list(_BY_KEY), n=1, cutoff=0.5)
        hint = f" (did you mean {_BY_KEY[close[0]].name!r}?)" if close else ""
        raise UnknownEntryError(f"unknown zoo entry {name!r}{hint}; valid names: {', '.join(names())}")
    return entry
