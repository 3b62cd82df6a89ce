#!/usr/bin/env python3
"""Helper of bench/steady-state.sh (standard library only).

  steady-state.py record --serial LOG --output LOG --workload W --runner plain|ferry --run N --wall S --rc RC --meta JSON
      prints one JSON line for a boot: the meta fields, the run's identity, and the figures of the
      guest's "ferry-guest: bench mode=..." line (or "error" when the guest printed none: the guest's
      first error line, else the last line QEMU or ferry printed)
  steady-state.py table RESULTS.jsonl
      prints the Markdown table: each run's MiB/s under plain QEMU and under ferry run, the medians,
      and ferry/plain of the medians against the 0.98 target
"""
import argparse
import json
import re
import statistics
import sys

BENCH_LINE = re.compile(r"ferry-guest: bench mode=(\S+) bytes=(\d+) ops=(\d+) seconds=([\d.]+) "
                        r"mib_per_s=([\d.]+) iops=([\d.]+)")
ERROR_LINE = re.compile(r"ferry-guest: (error .*)")
TARGET_RATIO = 0.98
WORKLOAD_TITLES = {
    "randwrite": "randwrite 4 KiB QD1",
    "randread": "randread 4 KiB QD1",
    "seqwrite": "seqwrite 1 MiB QD1",
}


def record(args):
    line = dict(json.loads(args.meta))
    line.update({"workload": args.workload, "runner": args.runner, "run": args.run,
                 "wall_s": round(args.wall, 1), "exit_status": args.rc})
    found, errors = None, []
    with open(args.serial, encoding="latin-1") as serial:
        for text in serial:
            m = BENCH_LINE.search(text)
            if m:
                found = m
            e = ERROR_LINE.search(text)
            if e:
                errors.append(e.group(1).strip())
    if found and found.group(1) == args.workload:
        line.update({"bytes": int(found.group(2)), "ops": int(found.group(3)),
                     "guest_seconds": float(found.group(4)), "mib_per_s": float(found.group(5)),
                     "iops": float(found.group(6))})
    elif found:
        line["error"] = "the guest ran mode=%s, expected %s" % (found.group(1), args.workload)
    else:
        why = errors[0] if errors else "no bench line on the serial console"
        if not errors and args.output:
            try:
                with open(args.output, encoding="latin-1") as output:
                    last = [text.strip() for text in output if text.strip()]
                if last:
                    why += "; last output line: " + last[-1]
            except OSError:
                pass
        line["error"] = "%s (exit status %d after %.0f s)" % (why, args.rc, args.wall)
    print(json.dumps(line, sort_keys=True))


def fmt(value):
    return "%.1f" % value if value < 100 else "%.0f" % value


def table(args):
    with open(args.results) as f:
        lines = [json.loads(text) for text in f if text.strip()]
    if not lines:
        sys.exit("steady-state.py: no results in " + args.results)
    order = []
    for line in lines:
        if line["workload"] not in order:
            order.append(line["workload"])
    first = lines[0]
    print("format=%s drive=`%s` seconds=%s runs=%s commit=%s date=%s" % (
        first.get("format"), first.get("drive"), first.get("seconds"), max(l["run"] for l in lines),
        first.get("commit"), first.get("date")))
    print()
    print("| workload | plain MiB/s (each run) | ferry MiB/s (each run) | plain median | ferry median "
          "| plain IOPS median | ferry IOPS median | ferry/plain | >= %.2f? |" % TARGET_RATIO)
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for workload in order:
        runs = {"plain": [], "ferry": []}
        for line in lines:
            if line["workload"] == workload:
                runs[line["runner"]].append(line)
        cells, medians, iops = [], {}, {}
        for runner in ("plain", "ferry"):
            ok = [l for l in runs[runner] if "mib_per_s" in l]
            cells.append(" ".join(fmt(l["mib_per_s"]) if "mib_per_s" in l else "failed" for l in runs[runner]) or "-")
            medians[runner] = statistics.median(l["mib_per_s"] for l in ok) if ok else None
            iops[runner] = statistics.median(l["iops"] for l in ok) if ok else None
        if medians["plain"] and medians["ferry"] is not None:
            ratio = medians["ferry"] / medians["plain"]
            ratio_cell, met = "%.2f" % ratio, "yes" if ratio >= TARGET_RATIO else "no"
        else:
            ratio_cell, met = "-", "-"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            WORKLOAD_TITLES.get(workload, workload), cells[0], cells[1],
            *(fmt(v) if v is not None else "-" for v in (medians["plain"], medians["ferry"], iops["plain"], iops["ferry"])),
            ratio_cell, met))
    failed = [l for l in lines if "error" in l]
    for line in failed:
        print("\nfailed: run %d %s %s: %s" % (line["run"], line["workload"], line["runner"], line["error"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("record")
    r.add_argument("--serial", required=True)
    r.add_argument("--output", help="the runner's own stdout and stderr")
    r.add_argument("--workload", required=True)
    r.add_argument("--runner", required=True, choices=("plain", "ferry"))
    r.add_argument("--run", required=True, type=int)
    r.add_argument("--wall", required=True, type=float)
    r.add_argument("--rc", required=True, type=int)
    r.add_argument("--meta", default="{}")
    r.set_defaults(func=record)
    t = sub.add_parser("table")
    t.add_argument("results")
    t.set_defaults(func=table)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
