"""Benchmark: our t-SNE (reprodl.manifold.tsne, openTSNE) vs scikit-learn's TSNE.

Both map the same MNIST images to 2-D in this one run, with the same settings (perplexity
30, PCA initialisation, the same seed, the gradient approximation left at each
library's default: Barnes-Hut for both below 10,000 points). Prints seconds and neighboring_hit
(k = 6) of each, then the ratio sklearn seconds / ours. --quick: the embedded test
split (500 images); default: the training split (4,000 embedded, 60,000 full: slow).

The limit: none applies. t-SNE's time goes to the neighbour search, the perplexity
calibration and 750 iterations of a tree-based gradient (Barnes-Hut), pointer-chasing and
branchy work with no GEMM or convolution whose throughput would bound it, so the script says
so ("fraction of limit: n/a") instead of printing a FLOP figure that would mean nothing.

    OMP_NUM_THREADS=1 python benchmarks/tsne.py --quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from reprodl import datasets, manifold
from reprodl.metrics import neighboring_hit
from timing import machine_line, print_record  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test split (500 images) instead of the training split")
    parser.add_argument("--n-jobs", type=int, default=1, help="threads for both (1: the pipeline's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prepared", default=str(ROOT / "data" / "prepared" / "mnist"), help="prepared MNIST folder")
    parser.add_argument("--split", help="the split to embed (default: test with --quick, else train)")
    args = parser.parse_args(argv)

    split = datasets.load_split(Path(args.prepared), args.split or ("test" if args.quick else "train"))
    x = split.x.reshape(len(split), -1).astype(np.float32) / 255.0  # (N, 784)
    print(machine_line(args.n_jobs))
    print(f"{len(x)} MNIST images, perplexity 30, PCA init, seed {args.seed}, n_jobs {args.n_jobs}")

    from sklearn.manifold import TSNE

    start = time.perf_counter()
    theirs = TSNE(n_components=2, perplexity=30, init="pca", random_state=args.seed, n_jobs=args.n_jobs).fit_transform(x)
    sklearn_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours = manifold.tsne(x, perplexity=30, seed=args.seed, n_jobs=args.n_jobs)
    our_seconds = time.perf_counter() - start

    for name, points, seconds in (("sklearn TSNE", theirs, sklearn_seconds), ("ours (openTSNE)", ours, our_seconds)):
        print(f"{name:16s} {seconds:7.2f} s   neighboring_hit {neighboring_hit(points, split.y)[0]:.4f}")
    ratio = sklearn_seconds / our_seconds
    print(f"speed-up (sklearn seconds / ours): {ratio:.2f}")
    print("fraction of limit: n/a (no GEMM or convolution carries t-SNE's work: neighbour search and a Barnes-Hut "
          "gradient, memory- and branch-bound; no FLOP limit to compare with)")
    print_record("tsne", ratio=ratio, target="none", threads=args.n_jobs, precision="n/a", limit=None,
                 fraction=None, holds=None, points=len(x))


if __name__ == "__main__":
    main()
