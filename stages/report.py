"""Stage report, the last: the study on one page, reports/index.html and its twin reports/index.md.

Reads only the other stages' outputs (metrics/, timings/, reports/<exp>.md, plots/) and the seed
sweep's aggregate (seeds/, written by `reprodl seeds`); states the params and git commit it was
built from.
"""

from pathlib import Path

from common import load_config, run, write_outputs

from reprodl.report import Inputs, git_state, write_report


def main() -> None:
    params = load_config()  # every section checked before any work
    write_report(
        params.model_dump(mode="json"),
        Inputs(),
        git=git_state(Path(".")),
        html_path=Path("reports/index.html"),
        md_path=Path("reports/index.md"),
    )
    write_outputs("report")


if __name__ == "__main__":
    run(main)
