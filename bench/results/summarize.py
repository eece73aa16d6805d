#!/usr/bin/env python3
"""Medians over repeated `tributary bench compare` runs, as a Markdown table.

Usage: summarize.py BASELINE_TARGET RUN_DIR...  (each RUN_DIR holds one compare's JSON files).
Per (target, protocol): the median over the runs of the mean publish and consume rates, the
aggregated publish and end-to-end p99, the publish error rate; the ratio divides medians by
those of BASELINE_TARGET over the same protocol. Rates count acknowledged sends only
(`publishRateCounts`).
"""
import json
import statistics
import sys
from pathlib import Path


def mean(values):
    return sum(values) / len(values) if values else 0.0


def main():
    baseline, dirs = sys.argv[1], sys.argv[2:]
    rows = {}
    for d in dirs:
        for f in sorted(Path(d).glob("*.json")):
            r = json.loads(f.read_text())
            key = (r["target"], r["protocol"])
            rows.setdefault(key, []).append(r)
    med = {}
    for key, runs in rows.items():
        med[key] = {
            "n": len(runs),
            "publish": statistics.median(mean(r["publishRate"]) for r in runs),
            "publish_min": min(mean(r["publishRate"]) for r in runs),
            "consume": statistics.median(mean(r["consumeRate"]) for r in runs),
            "p99": statistics.median(r["aggregatedPublishLatency99pct"] for r in runs),
            "e2e99": statistics.median(r["aggregatedEndToEndLatency99pct"] for r in runs),
            "errors": statistics.median(mean(r["publishErrorRate"]) for r in runs),
        }
    print("| target (protocol) | runs | publish msg/s median (min) | consume msg/s median "
          "| publish p99 ms | e2e p99 ms | publish errors/s | publish ratio | consume ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (target, protocol), m in sorted(med.items(), key=lambda kv: (kv[0][1], kv[0][0] != baseline)):
        base = med.get((baseline, protocol))
        ratio = lambda k: f"{m[k] / base[k]:.2f}×" if base and base[k] else "–"
        print(f"| {target} ({protocol}) | {m['n']} | {m['publish']:,.0f} ({m['publish_min']:,.0f}) "
              f"| {m['consume']:,.0f} | {m['p99']:,.1f} | {m['e2e99']:,.1f} | {m['errors']:,.1f} "
              f"| {ratio('publish')} | {ratio('consume')} |")


if __name__ == "__main__":
    main()
