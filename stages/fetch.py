"""Stage fetch@<dataset>: raw data into data/raw/<dataset>/ (download or packaged stand-in)."""

import sys

from common import load_params, run, show_progress

from reprodl import datasets
from reprodl.params import check_data


def main() -> None:
    name = sys.argv[1]
    data = check_data(load_params()["data"])
    if name not in data["datasets"]:
        raise datasets.DatasetError(f"{name} is not in data.datasets ({', '.join(data['datasets'])})")
    files = datasets.fetch(name, data["profile"], f"data/raw/{name}", data["sources"].get(name), progress=show_progress())
    print(f"fetch {name} ({data['profile']}): {', '.join(str(f) for f in files)}")


if __name__ == "__main__":
    run(main)
