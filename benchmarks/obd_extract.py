"""Write the compact extract of the Open Bandit Dataset sample that ``benchmarks/data/obd`` ships: for each
logger (random, bts) and campaign (all, men, women), the columns fusionsim reads as ``<campaign>.parquet``
and the campaign's ``item_context.csv``, from obp 0.5.7's source distribution (where the sample lies under
``obp/dataset/obd``, Apache-2.0):

    pip download --no-deps --no-binary :all: --ignore-requires-python obp==0.5.7 -d /tmp/obp
    python benchmarks/obd_extract.py --sdist /tmp/obp/obp-0.5.7.tar.gz [--out benchmarks/data/obd]

Prints the files written and their sizes.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import pandas as pd

from fusionsim.common.io import atomic_target

COLUMNS = ["timestamp", "item_id", "position", "click", "propensity_score",
           "user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"]
"""What ``fusionsim obd-check`` and ``fusionsim ope --obd`` read of a campaign (the affinities are left out)."""
PREFIX = "obp-0.5.7/obp/dataset/obd/"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, required=True, help="obp-0.5.7.tar.gz")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "obd")
    args = parser.parse_args()
    with tarfile.open(args.sdist) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not (member.isfile() and member.name.startswith(PREFIX) and member.name.endswith(".csv")):
                continue
            relative = Path(member.name[len(PREFIX):])  # <logger>/<campaign>/<file>.csv
            target = args.out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            data = archive.extractfile(member).read()
            if relative.name == "item_context.csv":
                with atomic_target(target) as tmp:
                    Path(tmp).write_bytes(data)
            else:
                table = pd.read_csv(io.BytesIO(data), index_col=0, usecols=["Unnamed: 0", *COLUMNS])
                target = target.with_suffix(".parquet")
                with atomic_target(target) as tmp:
                    table.to_parquet(tmp, index=False, compression="zstd")
            print(f"{target}  {target.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
