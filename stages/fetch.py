"""Stage fetch@<dataset>: raw data into data/raw/<dataset>/ (download or packaged stand-in)."""

import sys

from common import SOURCES_FILE, load_config, run, show_progress, write_outputs

from reprodl import datasets
from reprodl.config import ParamError, load_sources


def main() -> None:
    name = sys.argv[1]
    data = load_config().data
    if name not in data.datasets:
        raise ParamError("data.datasets", f"does not list {name} ({', '.join(data.datasets)})")
    source = None
    if data.profile == "full":  # the embedded profile reads installed packages: no sources needed
        source = load_sources(SOURCES_FILE, needed=[name])[name].model_dump()
    files = datasets.fetch(name, data.profile, f"data/raw/{name}", source, progress=show_progress())
    print(f"fetch {name} ({data.profile}): {', '.join(str(f) for f in files)}")
    write_outputs(f"fetch_{name}")


if __name__ == "__main__":
    run(main)
