"""Con Voice: Creative Commons video in, versioned self-labelled speaker datasets out."""

__version__ = "0.1.0"

import os as _os
from pathlib import Path as _Path

# torch and CTranslate2 each run an OpenMP pool (libgomp). By default its threads
# spin after every parallel region; on a 2-core machine that spinning starves the
# other pool and any other process: segmentation and CAM++ ran 6-7 times slower with 2 spinning
# threads under load than with passive ones (README, "How it works"). Set before
# torch or CTranslate2 is loaded (both are imported lazily); an operator's value wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def checkout() -> _Path:
    """The directory holding ``convoice/``: in a source checkout, its root (``pyproject.toml``,
    ``deployments/``, ``.venv-labelstudio``); in an installed copy, ``site-packages``."""
    return _Path(__file__).resolve().parent.parent
