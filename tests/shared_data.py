"""Where the real datasets for development live (``../shared/data`` or ``$MMROBUST_SHARED_DATA``);
tests that need them skip with this reason when they are absent."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MMROBUST_SHARED_DATA", ROOT.parent / "shared" / "data"))
MNIST, FSDD = SHARED / "mnist", SHARED / "fsdd" / "recordings"
MISSING = f"MNIST or FSDD not found under {SHARED} (set MMROBUST_SHARED_DATA)"
HAVE_REAL_DATA = MNIST.is_dir() and FSDD.is_dir()
