#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Collect every suite's result.tsv under a results directory into
summary.tsv, print the table with where the time went, and end with the
line "N passed, N failed, N skipped" counted over test cases. Exit status 1
if any case failed, any suite reported a splat, or no case ran at all.

Usage: summary.py RESULTS [--limits FILE] [--build-seconds N]
                  [--tests-seconds N] [SUITE...]
  SUITE...    suites that must have a result (a missing one is a failure)
  --limits    suite<TAB>guest limit<TAB>per-case limit (kselftest harness),
              written by CMake: adds the headroom column (limit over
              measured time, the smaller of the two ratios)
"""
import argparse
import sys
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument('root', type=Path)
ap.add_argument('suites', nargs='*')
ap.add_argument('--limits', type=Path)
ap.add_argument('--build-seconds', type=int)
ap.add_argument('--tests-seconds', type=int)
args = ap.parse_intermixed_args()
root = args.root


def num(x):
    try:
        return float(x)
    except ValueError:
        return None


rows = {}
for f in sorted(root.glob('**/result.tsv')):
    for line in f.read_text().splitlines():
        p = line.split('\t')
        if len(p) < 5:
            continue
        p += [''] * (10 - len(p))
        rows[p[0]] = {'suite': p[0], 'counts': [int(x) for x in p[1:5]],
                      'wall': num(p[5]), 'boot': num(p[6]), 'run': num(p[7]),
                      'slow': num(p[8]), 'slow_case': p[9]}
for s in args.suites:
    if s not in rows:
        # A suite that left no result (its build failed, CTest killed it).
        rows[s] = {'suite': s, 'counts': [0, 1, 0, 0], 'wall': None, 'boot': None,
                   'run': None, 'slow': None, 'slow_case': ''}

limits = {}
if args.limits and args.limits.exists():
    for line in args.limits.read_text().splitlines():
        p = line.split('\t')
        if len(p) == 3:
            limits[p[0]] = (num(p[1]), num(p[2]))


def headroom(r):
    """Smallest ratio of a limit to what it bounds, and what it was."""
    lim = limits.get(r['suite'])
    if not lim:
        return None, ''
    out = []
    if lim[0] and r['wall']:
        out.append((lim[0] / r['wall'], f"guest {r['wall']:.0f}/{lim[0]:.0f} s"))
    if lim[1] and r['slow']:
        out.append((lim[1] / r['slow'], f"case {r['slow']:.0f}/{lim[1]:.0f} s ({r['slow_case']})"))
    return min(out, default=(None, ''))


hdr = ['suite', 'passed', 'failed', 'skipped', 'splats', 'time_s', 'boot_s',
       'run_s', 'slowest_case_s', 'slowest_case', 'headroom']
with open(root / 'summary.tsv', 'w') as f:
    f.write('\t'.join(hdr) + '\n')
    for r in rows.values():
        h, _ = headroom(r)
        vals = [r['suite']] + [str(x) for x in r['counts']] + [
            '' if r[k] is None else f'{r[k]:.1f}' for k in ('wall', 'boot', 'run', 'slow')
        ] + [r['slow_case'], '' if h is None else f'{h:.1f}']
        f.write('\t'.join(vals) + '\n')


def t(x):
    return '-' if x is None else f'{x:.0f}'


def t1(x):
    return '-' if x is None else f'{x:.1f}'


w = max([len('suite')] + [len(r['suite']) for r in rows.values()])
print()
print(f"{'suite':<{w}}  {'passed':>6}  {'failed':>6}  {'skipped':>7}  {'splats':>6}"
      f"  {'time s':>6}  {'boot s':>6}  {'slowest case s':>14}  {'headroom':>8}")
line = '-' * (w + 77)
print(line)
tot = [0, 0, 0, 0]
walls = []
low = (None, '', '')
for r in rows.values():
    c = r['counts']
    h, why = headroom(r)
    if h is not None and (low[0] is None or h < low[0]):
        low = (h, r['suite'], why)
    print(f"{r['suite']:<{w}}  {c[0]:>6}  {c[1]:>6}  {c[2]:>7}  {c[3]:>6}"
          f"  {t(r['wall']):>6}  {t(r['boot']):>6}  {t1(r['slow']):>14}"
          f"  {'-' if h is None else f'{h:.1f}x':>8}")
    tot = [a + b for a, b in zip(tot, c)]
    if r['wall'] is not None:
        walls.append(r)
print(line)
sw = sum(r['wall'] for r in walls)
sb = sum(r['boot'] for r in walls if r['boot'] is not None)
print(f"{'total':<{w}}  {tot[0]:>6}  {tot[1]:>6}  {tot[2]:>7}  {tot[3]:>6}  {sw:>6.0f}  {sb:>6.0f}")
print(f'results: {root}/summary.tsv (per case: {root}/<suite>/cases.tsv)')
if args.build_seconds is not None and args.tests_seconds is not None:
    print(f'time: build {args.build_seconds} s, tests {args.tests_seconds} s '
          f'({len(walls)} guest boots, {sw:.0f} s in guests, of which {sb:.0f} s booting '
          'and shutting down)')
if low[0] is not None:
    print(f'lowest headroom: {low[0]:.1f}x, {low[1]}: {low[2]}')
print(f'{tot[0]} passed, {tot[1]} failed, {tot[2]} skipped')
sys.exit(1 if tot[1] or tot[3] or tot[0] == 0 else 0)
