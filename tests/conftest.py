"""Make the helpers in tests/ (such as fakes.py) importable as top-level modules."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
