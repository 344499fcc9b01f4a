"""Stage prepare@<dataset>: decode, split (seeded, stratified) into data/prepared/<dataset>/."""

import sys

from common import load_config, run, show_progress, write_outputs

from reprodl import datasets


def main() -> None:
    name = sys.argv[1]
    params = load_config()
    data = params.data
    meta = datasets.prepare(
        name,
        data.profile,
        f"data/raw/{name}",
        f"data/prepared/{name}",
        fractions=data.split.fractions,
        seed=params.seed,
        official_test=data.official_test,
        max_images=data.max_images,
        image_size=data.image_size,
        scene_options=data.scenes.model_dump(),
        colour_size=data.colour_size,
        pair_options=data.pairs.model_dump(),
        fine_grained_fractions=data.fine_grained_split.fractions,
        progress=show_progress(),
    )
    print(f"prepare {name} ({meta['profile']}): {meta['sizes']}, images {meta['image_shape']}")
    write_outputs(f"prepare_{name}")


if __name__ == "__main__":
    run(main)
