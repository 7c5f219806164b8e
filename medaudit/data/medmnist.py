"""MedMNIST 2D metadata (names, label maps, tasks, official URLs and MD5s) and downloads.

Metadata transcribed from the ``medmnist`` package's ``medmnist/info.py`` (v3.0.2,
MedMNIST+; Zenodo record 10519652, which serves the 28 px files and the 64/128/224 px
sizes). Class names are the official labels made identifier-safe (lower case, runs of
non-alphanumerics → ``_``), e.g. breastmnist ``"normal, benign"`` → ``normal_benign``.

``medmnist:NAME`` / ``medmnist:NAME@SIZE`` looks for ``NAME.npz`` / ``NAME_SIZE.npz`` in
``$MEDMNIST_ROOT`` (default ``~/.medmnist``); when absent it downloads the official file
(unless ``MEDAUDIT_OFFLINE=1``), checks its MD5, and renames a temporary file into place
only on success. The MD5 is checked on download, not on every load.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from medaudit.errors import MedauditError
from medaudit.fileio import atomic_path

BASE_URL = "https://zenodo.org/records/10519652/files/"
SIZES = (28, 64, 128, 224)

_RAW_LABELS: dict[str, list[str]] = {
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium"],
    "chestmnist": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"],
    "tissuemnist": ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                    "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes", "Podocytes",
                    "Proximal Tubule Segments", "Thick Ascending Limb"],
    "organamnist": ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                    "lung-left", "lung-right", "pancreas", "spleen"],
}  # fmt: skip
_RAW_LABELS["organcmnist"] = _RAW_LABELS["organamnist"]
_RAW_LABELS["organsmnist"] = _RAW_LABELS["organamnist"]

_TASKS = {"chestmnist": "multilabel", "retinamnist": "ordinal", "pneumoniamnist": "binary", "breastmnist": "binary"}

# name -> (MD5 28, MD5 64, MD5 128, MD5 224), from info.py v3.0.2.
MD5: dict[str, tuple[str, str, str, str]] = {
    "pathmnist": ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
                  "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec"),
    "chestmnist": ("02c8a6516a18b556561a56cbdd36c4a8", "9de6cd0b934ebb5b7426cfba5efbae16",
                   "db107e5590b27930b62dbaf558aebee3", "45bd33e6f06c3e8cdb481c74a89152aa"),
    "dermamnist": ("0744692d530f8e62ec473284d019b0c7", "b70a2f5635c6199aeaa28c31d7202e1f",
                   "2defd784463fa5243564e855ed717de1", "8974907d8e169bef5f5b96bc506ae45d"),
    "octmnist": ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
                 "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3"),
    "pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
                       "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1"),
    "retinamnist": ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
                    "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348"),
    "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
                    "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b"),
    "bloodmnist": ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
                   "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601"),
    "tissuemnist": ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
                    "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c"),
    "organamnist": ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
                    "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170"),
    "organcmnist": ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
                    "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1"),
    "organsmnist": ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
                    "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1"),
}  # fmt: skip

# Official split sizes (train, val, test), used to warn about re-packaged copies.
N_SAMPLES: dict[str, tuple[int, int, int]] = {
    "pathmnist": (89996, 10004, 7180), "chestmnist": (78468, 11219, 22433), "dermamnist": (7007, 1003, 2005),
    "octmnist": (97477, 10832, 1000), "pneumoniamnist": (4708, 524, 624), "retinamnist": (1080, 120, 400),
    "breastmnist": (546, 78, 156), "bloodmnist": (11959, 1712, 3421), "tissuemnist": (165466, 23640, 47280),
    "organamnist": (34561, 6491, 17778), "organcmnist": (12975, 2392, 8216), "organsmnist": (13932, 2452, 8827),
}  # fmt: skip

KNOWN = tuple(sorted(_RAW_LABELS))


def slug(label: str) -> str:
    """Identifier-safe class name: lower case, runs of non-alphanumerics → ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


def class_names(name: str) -> list[str]:
    """Class (label) names of a known MedMNIST 2D dataset, in label-index order."""
    return [slug(x) for x in _RAW_LABELS[name]]


def task_of(name: str) -> str:
    """medaudit task of a known dataset (retinamnist is declared ordinal by its authors)."""
    return _TASKS.get(name, "multiclass")


def known_name_from_stem(stem: str) -> str | None:
    """``pneumoniamnist`` / ``pneumoniamnist_64`` → ``pneumoniamnist``; None if unknown."""
    m = re.fullmatch(r"([a-z]+mnist)(?:_(\d+))?", stem.lower())
    return m.group(1) if m and m.group(1) in _RAW_LABELS else None


def parse_spec(spec: str) -> tuple[str, int]:
    """``medmnist:NAME[@SIZE]`` → (name, size). MedauditError on unknown name or size."""
    body = spec.split(":", 1)[1].strip().lower()
    name, _, size_txt = body.partition("@")
    if name not in _RAW_LABELS:
        raise MedauditError(f"--data {spec}: unknown MedMNIST dataset '{name}'; known 2D datasets: {', '.join(KNOWN)}")
    try:
        size = int(size_txt) if size_txt else 28
    except ValueError:
        size = -1
    if size not in SIZES:
        raise MedauditError(f"--data {spec}: size must be one of {', '.join(map(str, SIZES))} (e.g. medmnist:{name}@64)")
    return name, size


def file_name(name: str, size: int) -> str:
    """Official file name: ``NAME.npz`` (28 px) or ``NAME_SIZE.npz``."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def default_root() -> Path:
    """``$MEDMNIST_ROOT`` or ``~/.medmnist`` (not created here)."""
    return Path(os.environ.get("MEDMNIST_ROOT") or Path.home() / ".medmnist").expanduser()


def fetch(
    name: str,
    size: int = 28,
    *,
    root: Path | None = None,
    base_url: str = BASE_URL,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Path of the local MedMNIST file, downloading it first when absent and allowed.

    Parameters
    ----------
    name, size : str, int
        A known 2D dataset and one of :data:`SIZES`.
    root : Path, optional
        Folder holding the files; default :func:`default_root`.
    base_url : str
        Folder URL the file name is appended to (injectable for tests).
    md5 : str, optional
        Expected MD5 hex; default the official one.
    timeout : float
        Socket timeout in seconds.
    """
    root = root or default_root()
    fname = file_name(name, size)
    dest = root / fname
    if dest.is_file():
        return dest
    url = f"{base_url.rstrip('/')}/{fname}?download=1"
    where = f"download {url} and place it at {dest} (or set MEDMNIST_ROOT to its folder)"
    if os.environ.get("MEDAUDIT_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise MedauditError(f"MedMNIST file {fname} not found in {root} and MEDAUDIT_OFFLINE is set; {where}")
    expected = md5 or MD5[name][SIZES.index(size)]
    try:
        root.mkdir(parents=True, exist_ok=True)
        download(url, dest, expected, timeout=timeout)
    except urllib.error.URLError as exc:
        raise MedauditError(f"MedMNIST file {fname} not found in {root} and the download failed ({exc}); {where}") from None
    except OSError as exc:
        raise MedauditError(f"could not save {dest} ({exc}); {where}") from None
    return dest


def download(url: str, dest: Path, md5: str, *, timeout: float = 60.0, chunk: int = 1 << 20) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, check its MD5, then rename.

    Nothing is left at ``dest`` (or beside it) when the download or the check fails.
    """
    digest = hashlib.md5()
    with atomic_path(dest, suffix=".part") as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(chunk):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != md5.lower():
            raise MedauditError(
                f"download of {url} has MD5 {digest.hexdigest()}, expected {md5}; the file is corrupt or changed "
                f"upstream; nothing was saved to {dest}"
            )
