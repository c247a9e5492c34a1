#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-only
#
# Turn gmem-bench's JSON (gmem-bench --json, written by harness/bench.sh)
# into markdown tables, the goals with their measured ratios, and
# a PNG plot of the cost per page against the range size.
#
# Usage: bench-report.py BENCH.json OUTDIR [--command CMD] [--name NAME]
#                        [--merge OTHER.json]... [--device LABEL=OTHER.json]...
#                        [--beside LABEL=OTHER.json]
#   --name    base name of the files written (default bench)
#   --merge   another run of the same kernel whose sizes are added
#   --device  another run of the same kernel on another IOMMU (bench.sh
#             --and-viommu): its groups are added as "GROUP (LABEL)"
#   --beside  another kernel measured at the same time (its own guest, the
#             same host load): each latency group gets a table of the worst
#             latencies of both, side by side, with their ratio; the fault
#             group (the same binary on the series and on pristine 7.3)
#             gets each phase's median per page on both, with the ratio
#             this / other and the spreads, and a goal of its own
# Writes OUTDIR/NAME.md, OUTDIR/NAME.png (matplotlib: Debian's
# python3-matplotlib, hence /usr/bin/python3; no plot for latency groups
# such as stall, whose goals and tables are in the markdown) and the JSON
# (merged, with --merge or --device).
import argparse
import json
import os
import shutil
import sys


def base_group(name):
    """The case of a group: "iommu-map (intel)" -> "iommu-map"."""
    return name.split(" (")[0]


def size_label(pages):
    b = pages * 4096
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if b >= 1 << shift and b % (1 << shift) == 0:
            return f"{b >> shift} {unit}"
    return f"{b} B"


class Report:
    def __init__(self, data, beside=()):
        self.d = data
        # (label, JSON) of kernels measured at the same time (--beside).
        self.beside = list(beside)
        self.icount = data["env"].get("icount") == "1"
        # Thousands of instructions, or microseconds of wall time.
        self.unit = "k-insn" if self.icount else "us"

    def outcome(self, group, variant, pages):
        g = self.d["groups"].get(group)
        if not g:
            return None
        return g["variants"].get(variant, {}).get(str(pages))

    def median(self, group, variant, pages, phase):
        o = self.outcome(group, variant, pages)
        if not o or o["status"] != "ok" or phase not in o["stats"]:
            return None
        return o["stats"][phase]["median"]

    def pages(self, group):
        g = self.d["groups"][group]
        any_v = next(iter(g["variants"].values()))
        return sorted(int(p) for p in any_v)

    def table(self, group, phase, per_page=False):
        g = self.d["groups"][group]
        names = list(g["variants"])
        base = names[0]
        what = f"{self.unit} per page" if per_page else self.unit
        out = [f"`{group}` {phase}, median, {what} (ratio = other / {base}):", ""]
        out.append("| size | " + " | ".join(names) + " |")
        out.append("|---" * (len(names) + 1) + "|")
        for p in self.pages(group):
            b = self.median(group, base, p, phase)
            cells = []
            for v in names:
                o = self.outcome(group, v, p)
                m = self.median(group, v, p, phase)
                if m is None:
                    cells.append(o["status"] if o else "-")
                    continue
                val = m / 1000 / (p if per_page else 1)
                c = f"{val:.3g}" if val < 100 else f"{val:.0f}"
                if v != base and b:
                    c += f" ({m / b:.2f}x)"
                cells.append(c)
            out.append(f"| {size_label(p)} | " + " | ".join(cells) + " |")
        return "\n".join(out) + "\n"

    def facts_table(self, group):
        g = self.d["groups"][group]
        rows = []
        keys = set()
        for v, per in g["variants"].items():
            for p, o in per.items():
                keys.update(o.get("facts", {}))
        keys = sorted(keys)
        if not keys:
            return ""
        rows.append(f"`{group}` facts:")
        rows.append("")
        rows.append("| variant | size | " + " | ".join(keys) + " |")
        rows.append("|---" * (len(keys) + 2) + "|")
        for v, per in g["variants"].items():
            for p in sorted(per, key=int):
                f = per[p].get("facts", {})
                rows.append(f"| {v} | {size_label(int(p))} | " +
                            " | ".join(str(f.get(k, "-")) for k in keys) + " |")
        return "\n".join(rows) + "\n"

    def fact(self, group, variant, pages, key):
        o = self.outcome(group, variant, pages)
        if not o or o["status"] != "ok":
            return None
        return o.get("facts", {}).get(key)

    def ratio(self, group, num, den, pages, phase):
        a = self.median(group, num, pages, phase)
        b = self.median(group, den, pages, phase)
        return a / b if a and b else None

    def goals(self):
        """Each goal: measured figure, met or missed."""
        rows = []

        def fmt(x):
            return "not run" if x is None else f"{x:.2f}"

        # 1. In-place round trip >= 5x cheaper than two backings, 2 MiB up.
        for p in self.pages("conv") if "conv" in self.d["groups"] else []:
            if p < 512:
                continue
            r = self.ratio("conv", "two-backing", "in-place", p, "round_trip")
            rows.append((f"conv round trip, two backings / in place, {size_label(p)}",
                         ">= 5", fmt(r), r is not None and r >= 5))
        # 2. Mirror map of 64 MiB no dearer than pinned IOMMU_IOAS_MAP.
        for g in self.d["groups"]:
            if base_group(g) != "iommu-map":
                continue
            r = self.ratio(g, "mirror", "pin-memfd-MAP", 16384, "map")
            rows.append((f"{g} map, mirror / pin-memfd-MAP, 64 MiB", "<= 1",
                         fmt(r), r is not None and r <= 1))
        # 3 and 4: not measured by this gmem-bench.
        # 3. The guest's touch of N allocated private pages: KVM's fault
        # path on a convertible slot against 7.3's attributes.
        if "touch" in self.d["groups"]:
            for p in self.pages("touch"):
                if p < 512:
                    continue
                r = self.ratio("touch", "in-place", "two-backing", p,
                               "to_private.guest_touch")
                rows.append((f"guest private touch (KVM faults), convertible slot / "
                             f"attributes, {size_label(p)}", "<= 1.1", fmt(r),
                             r is not None and r <= 1.1))
        if "footprint" in self.d["groups"]:
            # The largest size the case ran at (it stops at 64 MiB).
            ran = [p for p in self.pages("footprint")
                   if self.fact("footprint", "in-place", p, "kib_rest") is not None]
            big = max(ran or self.pages("footprint"))
            for other in ("two-backing", "two-backing-keep"):
                for fact in ("kib_rest", "kib_peak", "kib_after"):
                    a = self.fact("footprint", "in-place", big, fact)
                    b = self.fact("footprint", other, big, fact)
                    r = a / b if a is not None and b else None
                    rows.append((f"footprint at 50% shared, in place / {other}, "
                                 f"{fact[4:]}, {size_label(big)}", "<= 0.55", fmt(r),
                                 r is not None and r <= 0.55))
        # 5. State-only conversion: within 2x from 2 MiB to 1 GiB.
        if "notify" in self.d["groups"]:
            for v in ("none-holes", "none", "kvm"):
                r = self.ratio_sizes("notify", v, 512, 262144, "round_trip")
                rows.append((f"notify/{v} round trip, 1 GiB / 2 MiB", "<= 2",
                             fmt(r), r is not None and r <= 2))
        if "frag" in self.d["groups"]:
            r = self.ratio_sizes("frag", "one-range", 512, 262144, "round_trip")
            rows.append(("frag/one-range round trip, 1 GiB / 2 MiB", "<= 2",
                         fmt(r), r is not None and r <= 2))
        # 6. Mapped pages: cost per page flat or falling as the range grows.
        for g, v in (("conv", "in-place"), ("iommu-conv", "mirror"),
                     ("notify", "kvm+ioas+domain")):
            if g not in self.d["groups"]:
                continue
            ps = [p for p in self.pages(g) if p >= 512]
            per = [self.median(g, v, p, "round_trip") for p in ps]
            if len(ps) < 2 or None in per:
                rows.append((f"{g}/{v} cost per page, 2 MiB -> 1 GiB", "<= 1",
                             "not run", False))
                continue
            per = [m / p for m, p in zip(per, ps)]
            worst = max(per[i + 1] / per[i] for i in range(len(per) - 1))
            # Three decimals: a step of 1.004 is not "1.00".
            rows.append((f"{g}/{v} cost per page, largest step up between sizes",
                         "<= 1", f"{worst:.3f}", worst <= 1.0))
        rows += self.fault_goals()
        out = ["| goal | target | measured | |", "|---|---|---|---|"]
        for name, target, got, ok in rows:
            verdict = "met" if ok else "MISSED"
            if got in ("not run", "not measured"):
                verdict = "-"
            out.append(f"| {name} | {target} | {got} | {verdict} |")
        return "\n".join(out) + "\n"

    def ratio_sizes(self, group, variant, small, big, phase):
        a = self.median(group, variant, big, phase)
        b = self.median(group, variant, small, phase)
        return a / b if a and b else None

    def latency_groups(self):
        return [g for g, v in self.d["groups"].items() if v.get("latency")]

    def stat(self, group, variant, pages, row, key):
        o = self.outcome(group, variant, pages)
        if not o or o["status"] != "ok" or row not in o["stats"]:
            return None
        return o["stats"][row].get(key)

    def latency_table(self, group):
        """Per size and long operation: its duration, then worst and p99 of
        each concurrent measurement and worst / duration."""
        g = self.d["groups"][group]
        first, rows = g["phases"][0], g["phases"][1:]
        out = [f"`{group}`: `{first}` median / max ms; every other column worst / p99 ms "
               f"(worst / `{first}` median):", ""]
        out.append("| size | operation | " + first + " | " + " | ".join(rows) + " |")
        out.append("|---" * (len(rows) + 3) + "|")
        for p in self.pages(group):
            for v in g["variants"]:
                o = self.outcome(group, v, p)
                if not o or o["status"] != "ok":
                    out.append(f"| {size_label(p)} | {v} | "
                               f"{o['status'] if o else '-'} |" + " |" * len(rows))
                    continue
                base = self.stat(group, v, p, first, "median")
                top = self.stat(group, v, p, first, "max")
                cells = [f"{base / 1e6:.1f} / {top / 1e6:.1f}" if base else "-"]
                for r in rows:
                    worst = self.stat(group, v, p, r, "max")
                    p99 = self.stat(group, v, p, r, "p99")
                    if worst is None or not o["stats"][r]["n"]:
                        cells.append("-")
                        continue
                    c = f"{worst / 1e6:.1f} / {p99 / 1e6:.1f}"
                    if base:
                        c += f" ({worst / base:.3f})"
                    cells.append(c)
                out.append(f"| {size_label(p)} | {v} | " + " | ".join(cells) + " |")
        return "\n".join(out) + "\n"

    def latency_goals(self, group):
        """The stall goals: the worst latency of the concurrent operations
        does not grow with S (within 2x from the smallest size to the
        largest) and at the largest size is under 1% of the long
        operation's duration; SIGKILL ends it within the same bound. With a
        baseline (the measurements with no operation, e.g. idle), each
        operation's worst against the baseline's worst at the same size
        too, at the smallest and the largest size: what the operation adds
        to what the measurements see anyway (no target)."""
        g = self.d["groups"][group]
        first, rows = g["phases"][0], g["phases"][1:]
        ps = self.pages(group)
        small, big = ps[0], ps[-1]
        idle = g.get("baseline")
        goals = []

        def fmt(x):
            return "not run" if x is None else f"{x:.3f}"

        for v in g["variants"]:
            if v == idle:
                continue
            base = self.stat(group, v, big, first, "median")
            for r in rows:
                wb = self.stat(group, v, big, r, "max")
                if wb is None:
                    continue
                if r != "kill_exit" and big != small:
                    ws = self.stat(group, v, small, r, "max")
                    x = wb / ws if ws else None
                    goals.append((f"{v}: {r} worst, {size_label(big)} / {size_label(small)}",
                                  "<= 2", fmt(x), x is not None and x <= 2))
                x = wb / base if base else None
                goals.append((f"{v}: {r} worst / {first}, {size_label(big)}",
                              "< 0.01", fmt(x), x is not None and x < 0.01))
                if not idle or r == "kill_exit":
                    continue
                for p in sorted({small, big}):
                    w = self.stat(group, v, p, r, "max")
                    wi = self.stat(group, idle, p, r, "max")
                    x = w / wi if w is not None and wi else None
                    goals.append((f"{v}: {r} worst / {idle} worst, {size_label(p)}",
                                  "-", fmt(x), None))
        out = ["| goal | target | measured | |", "|---|---|---|---|"]
        for name, target, got, ok in goals:
            verdict = ("-" if got == "not run" or ok is None
                       else "met" if ok else "MISSED")
            out.append(f"| {name} | {target} | {got} | {verdict} |")
        return "\n".join(out) + "\n"

    def beside_table(self, group, label, other):
        """The worst latency of each measurement, the other kernel's (run at
        the same time) against this one's, and other / this."""
        o = Report(other)
        if group not in other["groups"]:
            return ""
        g = self.d["groups"][group]
        first, rows = g["phases"][0], g["phases"][1:]
        out = [f"`{group}` beside {label} ({other['env'].get('source')}), measured at "
               f"the same time: worst ms, {label} -> this kernel ({label} / this):", ""]
        out.append("| size | operation | " + first + " (median) | " + " | ".join(rows) + " |")
        out.append("|---" * (len(rows) + 3) + "|")
        for p in self.pages(group):
            for v in g["variants"]:
                cells = []
                for r in [first] + rows:
                    key = "median" if r == first else "max"
                    a = o.stat(group, v, p, r, key)
                    b = self.stat(group, v, p, r, key)
                    if a is None or b is None:
                        cells.append("-")
                        continue
                    c = f"{a / 1e6:.1f} -> {b / 1e6:.1f}"
                    if b:
                        c += f" ({a / b:.0f}x)" if a / b >= 10 else f" ({a / b:.2f}x)"
                    cells.append(c)
                out.append(f"| {size_label(p)} | {v} | " + " | ".join(cells) + " |")
        return "\n".join(out) + "\n"

    def beside_medians(self, group, label, other):
        """Each phase's median per page on this kernel and on @other (the same
        binary on another kernel, e.g. pristine 7.3), this / other, and the
        spread of each: interquartile range and extremes against the median."""
        o = Report(other)
        if group not in other["groups"]:
            return ""
        g = self.d["groups"][group]
        unit = f"{self.unit} per page"
        out = [f"`{group}` beside {label} ({other['env'].get('source')}, kernel "
               f"{other['env'].get('kernel')}): median {unit}, {label} and this "
               f"kernel, ratio this / {label}; spread = IQR and (max - min) "
               f"against the median, over n timed runs:", ""]
        out.append(f"| variant | phase | size | n | {label} | spread | this | spread "
                   f"| this / {label} |")
        out.append("|---" * 9 + "|")

        def spread(st):
            m = st["median"]
            return (f"{100 * (st['p75'] - st['p25']) / m:.2f}% "
                    f"({100 * (st['max'] - st['min']) / m:.2f}%)") if m else "-"
        for v in g["variants"]:
            for ph in [x for x in g["phases"] if x != "round_trip"]:
                for p in self.pages(group):
                    a = o.outcome(group, v, p)
                    b = self.outcome(group, v, p)
                    if not a or not b or a["status"] != "ok" or b["status"] != "ok" \
                            or ph not in a["stats"] or ph not in b["stats"]:
                        continue
                    sa, sb = a["stats"][ph], b["stats"][ph]
                    out.append(f"| {v} | {ph} | {size_label(p)} | {sb['n']} | "
                               f"{sa['median'] / p / 1000:.3f} | {spread(sa)} | "
                               f"{sb['median'] / p / 1000:.3f} | {spread(sb)} | "
                               f"{sb['median'] / sa['median']:.4f} |")
        return "\n".join(out) + "\n"

    def fault_goals(self):
        """The fault cost of a file that cannot be converted: within 2% of
        the other kernel's (pristine 7.3) at every size, per variant."""
        rows = []
        if "fault" in self.d["groups"] and not self.beside:
            rows.append(("fault per page, this / pristine 7.3 (--beside)", "<= 1.02",
                         "not measured", False))
        for label, other in self.beside:
            o = Report(other)
            if "fault" not in other["groups"] or "fault" not in self.d["groups"]:
                continue
            for v in self.d["groups"]["fault"]["variants"]:
                for p in self.pages("fault"):
                    a = o.median("fault", v, p, "fault")
                    b = self.median("fault", v, p, "fault")
                    r = b / a if a and b else None
                    rows.append((f"fault/{v} per page, this / {label}, {size_label(p)}",
                                 "<= 1.02", "not run" if r is None else f"{r:.4f}",
                                 r is not None and r <= 1.02))
        return rows

    def markdown(self, command):
        env = self.d["env"]
        clock = ("QEMU -icount shift=0: guest instructions" if self.icount
                 else "wall time under TCG")
        out = [
            "# gmem-bench results",
            "",
            f"- measured: {env.get('source')} (kernel {env.get('kernel')}, "
            f"config {env.get('config')}, KASAN {env.get('kasan')}, "
            f"lockdep {env.get('lockdep')}, IOMMU {env.get('device')})",
            f"- clock: {clock}; {env.get('reps')} reps after {env.get('warmup')} "
            f"warm-up, {env.get('big_reps')} after {env.get('big_warmup')} from "
            f"{size_label(int(env.get('big_pages', 0)))} on",
            f"- command: `{command}`",
            f"- sizes merged from another run of the same kernel: {env['merged']}"
            if env.get("merged") else "",
            "",
        ]
        if any(not g.get("latency") for g in self.d["groups"].values()):
            out += ["## Goals", "", self.goals()]
        phases = {
            "conv": ["round_trip", "to_shared", "to_private"],
            "iommu-map": ["map", "unmap"],
            "iommu-conv": ["round_trip"],
            "notify": ["to_private", "to_shared"],
            "frag": ["split", "merge"],
            "sparse": ["map", "unmap"],
            "footprint": ["round_trip"],
            "touch": ["to_shared.guest_touch", "to_private.guest_touch", "round_trip"],
            "fault": ["fault", "undo"],
        }
        for group, g in self.d["groups"].items():
            base = base_group(group)
            out += [f"## {group}: {g['title']}", ""]
            if g.get("latency"):
                out += [self.latency_table(group), "Goals (no operation "
                        "stalls the VM):", "", self.latency_goals(group)]
                for label, other in self.beside:
                    out.append(self.beside_table(group, label, other))
                ft = self.facts_table(group)
                if ft:
                    out.append(ft)
                continue
            for ph in phases.get(base, ["round_trip"]):
                out.append(self.table(group, ph))
            if base in ("conv", "iommu-map", "iommu-conv", "fault"):
                first = phases[base][0]
                out.append(self.table(group, first, per_page=True))
            if base == "fault":
                for label, other in self.beside:
                    out.append(self.beside_medians(group, label, other))
            ft = self.facts_table(group)
            if ft:
                out.append(ft)
        return "\n".join(out)

    def plot(self, path):
        panels = [
            ("conversion round trip", [("conv", "in-place", "round_trip"),
                                       ("conv", "two-backing", "round_trip"),
                                       ("conv", "two-backing+copy", "round_trip")]),
            ("IOAS map", [("iommu-map", "mirror", "map"),
                          ("iommu-map", "pin-memfd-MAP", "map"),
                          ("iommu-map", "pin-memfd-MAP_FILE", "map")]),
            ("DMA-mapped conversion round trip",
             [("iommu-conv", "mirror", "round_trip"),
              ("iommu-conv", "pin-in-place", "round_trip"),
              ("iommu-conv", "pin-two-backing", "round_trip")]),
        ]
        # The same lines from another IOMMU (--device), dashed.
        for _, lines in panels:
            lines += [(g, v, ph) for g in self.d["groups"]
                      for (b, v, ph) in list(lines)
                      if g != b and base_group(g) == b]
        # Nothing to plot (e.g. only stall or fault): no matplotlib needed.
        if not any(g in self.d["groups"] for _, lines in panels for g, _, _ in lines):
            return False
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.5))
        for ax, (title, lines) in zip(axes, panels):
            for group, variant, phase in lines:
                if group not in self.d["groups"]:
                    continue
                xs, ys = [], []
                for p in self.pages(group):
                    m = self.median(group, variant, p, phase)
                    if m is not None:
                        xs.append(p * 4096)
                        ys.append(m / p)
                if xs:
                    other = group != base_group(group)
                    label = variant + group[len(base_group(group)):]
                    ax.plot(xs, ys, marker="o", label=label,
                            linestyle="--" if other else "-")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("range size (bytes)")
            ax.set_ylabel(("instructions" if self.icount else "ns") + " per 4 KiB page")
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_lines():
                ax.legend()
        fig.suptitle(f"gmem-bench, {self.d['env'].get('source')}, "
                     f"{'-icount shift=0' if self.icount else 'TCG wall time'}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("outdir")
    ap.add_argument("--command", default="harness/bench.sh")
    ap.add_argument("--name", default="bench",
                    help="base name of the files written (NAME.md, NAME.json, NAME.png)")
    ap.add_argument("--merge", action="append", default=[],
                    help="another run's JSON whose sizes are added (same kernel)")
    ap.add_argument("--device", action="append", default=[],
                    metavar="LABEL=JSON",
                    help="the same kernel on another IOMMU: groups added as 'GROUP (LABEL)'")
    ap.add_argument("--beside", action="append", default=[],
                    metavar="LABEL=JSON",
                    help="another kernel measured at the same time: worst latencies side by "
                    "side; for the fault group, medians per page and their ratio")
    a = ap.parse_args()
    with open(a.json) as f:
        data = json.load(f)
    for m in a.merge:
        with open(m) as f:
            other = json.load(f)
        # The kernel must be the same (tree:...); the benchmark's commit
        # may differ (a case added between the runs).
        def ktree(d):
            return d["env"].get("source", "").split(",tree:")[-1]
        if ktree(other) != ktree(data) or other["env"].get("config") != data["env"].get("config"):
            sys.exit(f"bench-report: {m} measured {other['env'].get('source')} "
                     f"({other['env'].get('config')}), not {data['env'].get('source')}")
        for gname, g in other["groups"].items():
            mine = data["groups"].setdefault(gname, g)
            if mine is g:
                continue
            for v, per in g["variants"].items():
                mine["variants"].setdefault(v, {}).update(per)
        data["env"]["merged"] = "; ".join(
            x for x in (data["env"].get("merged"), f"{other['env'].get('source')}, "
                        f"reps {other['env'].get('reps')}, big_reps "
                        f"{other['env'].get('big_reps')}") if x)
    for spec in a.device:
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"bench-report: --device {spec}: want LABEL=FILE")
        with open(path) as f:
            other = json.load(f)
        if other["env"].get("source", "").split(",tree:")[-1] != \
                data["env"].get("source", "").split(",tree:")[-1]:
            sys.exit(f"bench-report: {path} measured another kernel")
        for gname, g in other["groups"].items():
            g = dict(g, title=f"{g['title']} ({other['env'].get('device')})")
            data["groups"][f"{gname} ({label})"] = g
    beside = []
    for spec in a.beside:
        label, _, path = spec.partition("=")
        if not path:
            sys.exit(f"bench-report: --beside {spec}: want LABEL=FILE")
        with open(path) as f:
            beside.append((label, json.load(f)))
    r = Report(data, beside)
    os.makedirs(a.outdir, exist_ok=True)
    out = os.path.join(a.outdir, a.name)
    if a.merge or a.device:
        # The merged figures, which the report shows.
        with open(out + ".json", "w") as f:
            json.dump(data, f, indent=1)
    elif os.path.abspath(a.json) != os.path.abspath(out + ".json"):
        shutil.copy(a.json, out + ".json")
    with open(out + ".md", "w") as f:
        f.write(r.markdown(a.command))
    try:
        plotted = r.plot(out + ".png")
    except ImportError as e:
        print(f"bench-report: no plot ({e}); install python3-matplotlib", file=sys.stderr)
        return 1
    print(f"bench-report: wrote {out}.md" + (" and .png" if plotted else " (nothing to plot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
