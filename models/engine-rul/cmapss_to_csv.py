#!/usr/bin/env python3
"""Converts a NASA C-MAPSS text file (26 space-separated columns: unit, cycle, setting1..3,
s1..s21) into the CSV that `vigil replay` reads: header `asset,cycle,setting1,...,s21`, one row
per unit and cycle, asset = `unit-<n>`. Values are copied as written in NASA's file (no float
reformatting), so a replay sees exactly the numbers the model card was measured on.

  python3 models/engine-rul/cmapss_to_csv.py train_FD001.txt --out fd001.csv
  python3 models/engine-rul/cmapss_to_csv.py train_FD001.txt --validation-only --out fd001-val.csv
  python3 models/engine-rul/cmapss_to_csv.py train_FD003.txt --units 5,8 --out fd003-two.csv

--validation-only keeps the units that models/engine-rul/validation-units.json (written by the
build) lists for that file name, i.e. the engines the model never trained on. Standard library only.
"""
import argparse
import json
import os
import sys

TAGS = ["setting1", "setting2", "setting3"] + [f"s{i}" for i in range(1, 22)]
VALIDATION_UNITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validation-units.json")


def validation_units(source: str, units_file: str) -> set[int]:
    with open(units_file) as f:
        doc = json.load(f)
    name = os.path.basename(source)
    if name not in doc["units"]:
        raise SystemExit(f"{units_file} lists validation units for {', '.join(doc['units'])}, not for {name}")
    return set(doc["units"][name])


def convert(source: str, out, keep: set[int] | None) -> tuple[int, int]:
    """Writes the CSV to `out`; returns (rows, units) written."""
    out.write(",".join(["asset", "cycle"] + TAGS) + "\n")
    rows, units = 0, set()
    with open(source) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 + len(TAGS):
                raise SystemExit(f"{source}:{line_no}: expected {2 + len(TAGS)} columns, found {len(fields)}")
            try:
                unit, cycle = int(float(fields[0])), int(float(fields[1]))
                for value in fields[2:]:
                    float(value)
            except ValueError as err:
                raise SystemExit(f"{source}:{line_no}: not a number ({err})") from err
            if keep is not None and unit not in keep:
                continue
            out.write(f"unit-{unit},{cycle}," + ",".join(fields[2:]) + "\n")
            rows += 1
            units.add(unit)
    return rows, len(units)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="C-MAPSS file, e.g. train_FD001.txt")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--validation-only", action="store_true",
                       help="only the validation units of this file (validation-units.json)")
    which.add_argument("--units", help="comma-separated unit numbers to keep")
    parser.add_argument("--units-file", default=VALIDATION_UNITS, help="validation units JSON (default: %(default)s)")
    args = parser.parse_args()
    keep = None
    if args.validation_only:
        keep = validation_units(args.source, args.units_file)
    elif args.units:
        keep = {int(u) for u in args.units.split(",") if u.strip()}
    if args.out:
        with open(args.out, "w", newline="") as out:
            rows, units = convert(args.source, out, keep)
        print(f"wrote {rows} rows of {units} units to {args.out}", file=sys.stderr)
    else:
        convert(args.source, sys.stdout, keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
