#!/usr/bin/env python3
"""Sweeps of the scheduler simulator (myriad-sim), written as CSV and drawn as SVG.

Two studies, each a grid of myriad-sim runs (--csv appends a row per run):

  policies   one worker: where does the time slice beat FCFS and one adapter
             at a time, and where not? Load (as a share of what one worker
             carries) x Zipf exponent x slots x quantum x policy; plots TTFT
             p99 and Jain's fairness against load, a panel per (zipf, slots).
  placement  how affinity placement compares with least-loaded and random as
             workers grow: workers x placement at a load per worker, on the
             CPU profile and on the H200 estimate (costly uploads); plots the
             affinity hit rate, slot loads per second and TTFT p50 and p99.

Everything is deterministic (fixed seeds), so a rerun gives the same files.
The SVGs are drawn here (no plotting library): one line per series, log y
where asked.

usage: sim_sweep.py --sim build/nodes/myriad-sim --out DIR [--study policies|placement|all] [--quick]
"""
import argparse
import csv
import math
import os
import subprocess
import sys

# One worker's capacity at the sweep's lengths (prompt 64, output 32) with the
# built-in CPU model, requests/s: where busy_share reaches about 0.95 (200
# adapters, Zipf 1; 7 requests/s gave 0.92-0.94).
CAPACITY_RPS = 7.5
H200 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim", "cost_models",
                    "h200-tinyllama-estimate.json")


def run(sim, csv_path, **flags):
    cmd = [sim, "--json", "--csv", csv_path]
    for k, v in flags.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


def read(csv_path):
    with open(csv_path) as f:
        return list(csv.DictReader(f))


def svg_chart(title, series, xlabel, ylabel, logy=False, width=600, height=300):
    """series: {name: [(x, y), ...]}; returns an SVG document as a string."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    pts = [p for s in series.values() for p in s if p[1] is not None and (not logy or p[1] > 0)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    ys = [math.log10(p[1]) if logy else p[1] for p in pts]
    y0, y1 = min(ys), max(ys)
    if not logy:
        y0 = min(0.0, y0)
    if y1 == y0:
        y1 = y0 + 1
    if x1 == x0:
        x1 = x0 + 1
    L, R, T, B = 58, 110, 28, 40
    pw, ph = width - L - R, height - T - B

    def px(x):
        return L + (x - x0) / (x1 - x0) * pw

    def py(y):
        v = math.log10(y) if logy else y
        return T + ph - (v - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{L}" y="16" font-size="12" font-weight="bold">{title}</text>',
           f'<line x1="{L}" y1="{T + ph}" x2="{L + pw}" y2="{T + ph}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T + ph}" stroke="black"/>',
           f'<text x="{L + pw / 2}" y="{height - 6}" text-anchor="middle">{xlabel}</text>',
           f'<text x="12" y="{T + ph / 2}" text-anchor="middle" transform="rotate(-90 12 {T + ph / 2})">{ylabel}</text>']
    for i in range(5):  # y ticks
        v = y0 + (y1 - y0) * i / 4
        label = f"{10 ** v:.3g}" if logy else f"{v:.3g}"
        y = T + ph - ph * i / 4
        out.append(f'<line x1="{L - 4}" y1="{y}" x2="{L}" y2="{y}" stroke="black"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4}" text-anchor="end">{label}</text>')
    xs = sorted({p[0] for p in pts})
    for x in xs if len(xs) <= 8 else xs[::max(1, len(xs) // 8)]:
        out.append(f'<text x="{px(x)}" y="{T + ph + 14}" text-anchor="middle">{x:g}</text>')
    for i, (name, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        good = [(x, y) for x, y in sorted(s) if y is not None and (not logy or y > 0)]
        if len(good) > 1:
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
            out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="1.8"/>')
        for x, y in good:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{c}"/>')
        out.append(f'<text x="{L + pw + 8}" y="{T + 12 + 14 * i}" fill="{c}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def policies(sim, out, quick):
    path = os.path.join(out, "sweep-policies.csv")
    if os.path.exists(path):
        os.remove(path)
    loads = [0.3, 0.6, 0.8, 0.9, 1.0, 1.1] if not quick else [0.5, 0.9]
    zipfs = [0.0, 1.0, 1.5] if not quick else [0.0, 1.0]
    slotss = [4, 16] if not quick else [4]
    quanta = [5, 50, 200] if not quick else [50]
    for zipf in zipfs:
        for slots in slotss:
            for load in loads:
                for policy in ["timeslice", "fcfs", "one-at-a-time"]:
                    for quantum in quanta if policy == "timeslice" else [50]:
                        run(sim, path, adapters=200, workers=1, rate=round(load * CAPACITY_RPS, 3),
                            duration_s=600 if not quick else 120, zipf=zipf, policy=policy, slots=slots,
                            quantum_ms=quantum, prompt_mean=64, output_mean=32, seed=11)
    rows = read(path)
    for zipf in zipfs:
        for slots in slotss:
            for metric, label, logy in [("ttft_ms_p99", "TTFT p99 (ms)", True), ("jain_fairness", "Jain fairness", False)]:
                series = {}
                for r in rows:
                    if float(r["zipf"]) != zipf or int(r["slots"]) != slots:
                        continue
                    name = r["policy"] + (f" q={float(r['quantum_ms']):g}" if r["policy"] == "timeslice" else "")
                    series.setdefault(name, []).append((float(r["rate"]) / CAPACITY_RPS, float(r[metric])))
                svg = svg_chart(f"{label}: Zipf {zipf:g}, {slots} slots, 200 adapters", series,
                                "load (share of one worker's capacity)", label, logy=logy)
                write(os.path.join(out, f"policies-{metric}-zipf{zipf:g}-slots{slots}.svg"), svg)
    return rows


def placement(sim, out, quick, device):
    """device "cpu": the built-in model at 70% of a worker's capacity per worker;
    "h200": the H200 estimate (18.9 ms uploads) at 60 requests/s per worker."""
    path = os.path.join(out, f"sweep-placement-{device}.csv")
    if os.path.exists(path):
        os.remove(path)
    extra = {} if device == "cpu" else {"cost_model": H200}
    per_worker = 0.7 * CAPACITY_RPS if device == "cpu" else 60
    workerss = [1, 2, 4, 8, 16] if not quick else [1, 4]
    for workers in workerss:
        for p in ["affinity", "least-loaded", "random"]:
            run(sim, path, adapters=1000, workers=workers, rate=round(per_worker * workers, 3),
                duration_s=600 if not quick else 120, zipf=1.0, policy="timeslice", slots=8, placement=p,
                prompt_mean=64, output_mean=32, seed=12, **extra)
    rows = read(path)
    load = "70% load" if device == "cpu" else "60 req/s per worker"
    for metric, label, logy in [("affinity_hit_rate", "affinity hit rate", False),
                                ("slot_loads_per_s", "slot loads per second", False),
                                ("ttft_ms_p50", "TTFT p50 (ms)", True),
                                ("ttft_ms_p99", "TTFT p99 (ms)", True)]:
        series = {}
        for r in rows:
            series.setdefault(r["placement"], []).append((int(r["workers"]), float(r[metric])))
        write(os.path.join(out, f"placement-{device}-{metric}.svg"),
              svg_chart(f"{label} vs workers ({device}, 1,000 adapters, Zipf 1, {load})", series, "workers", label,
                        logy))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", required=True, help="the myriad-sim binary")
    ap.add_argument("--out", required=True, help="folder for the CSV and SVG files")
    ap.add_argument("--study", default="all", choices=["policies", "placement", "all"])
    ap.add_argument("--quick", action="store_true", help="a small grid (for a smoke test)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.study in ("policies", "all"):
        rows = policies(a.sim, a.out, a.quick)
        print(f"policies: {len(rows)} runs -> {a.out}/sweep-policies.csv and policies-*.svg")
    if a.study in ("placement", "all"):
        for device in ("cpu", "h200"):
            rows = placement(a.sim, a.out, a.quick, device)
            print(f"placement ({device}): {len(rows)} runs -> {a.out}/sweep-placement-{device}.csv and "
                  f"placement-{device}-*.svg")


if __name__ == "__main__":
    main()
