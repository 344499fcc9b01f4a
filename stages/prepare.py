"""Stage prepare@<dataset>: decode, split (seeded, stratified) into data/prepared/<dataset>/."""

import sys

from common import load_params, run, show_progress

from reprodl import datasets
from reprodl.params import check_data, check_seed


def main() -> None:
    name = sys.argv[1]
    params = load_params()
    seed = check_seed(params)
    data = check_data(params["data"])
    meta = datasets.prepare(
        name,
        data["profile"],
        f"data/raw/{name}",
        f"data/prepared/{name}",
        fractions=data["fractions"],
        seed=seed,
        official_test=data["official_test"],
        max_images=data["max_images"],
        image_size=data["image_size"],
        scene_options=data["scenes"],
        colour_size=data["colour_size"],
        sources=data["sources"].get(name),
        progress=show_progress(),
    )
    print(f"prepare {name} ({meta['profile']}): {meta['sizes']}, images {meta['image_shape']}")


if __name__ == "__main__":
    run(main)
