#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Collect every suite's result.tsv under a results directory into
summary.tsv (suite, passed, failed, skipped, splats), print the table and
end with the line "N passed, N failed, N skipped" counted over test cases.
Exit status 1 if any case failed, any suite reported a splat, or no case
ran at all."""
import sys
from pathlib import Path

root = Path(sys.argv[1])
expected = sys.argv[2:]  # suites that must have a result
rows = {}
for f in sorted(root.glob('**/result.tsv')):
    for line in f.read_text().splitlines():
        parts = line.split('\t')
        if len(parts) == 5:
            rows[parts[0]] = [parts[0]] + [int(x) for x in parts[1:]]
for s in expected:
    if s not in rows:
        # A suite that left no result (its build failed, CTest killed it).
        rows[s] = [s, 0, 1, 0, 0]

hdr = ['suite', 'passed', 'failed', 'skipped', 'splats']
with open(root / 'summary.tsv', 'w') as f:
    f.write('\t'.join(hdr) + '\n')
    for r in rows.values():
        f.write('\t'.join(str(x) for x in r) + '\n')

w = max([len(h) for h in hdr] + [len(r[0]) for r in rows.values()])
print()
print(f"{'suite':<{w}}  {'passed':>6}  {'failed':>6}  {'skipped':>7}  {'splats':>6}")
print('-' * (w + 35))
tot = [0, 0, 0, 0]
for r in rows.values():
    print(f'{r[0]:<{w}}  {r[1]:>6}  {r[2]:>6}  {r[3]:>7}  {r[4]:>6}')
    tot = [a + b for a, b in zip(tot, r[1:])]
print('-' * (w + 35))
print(f"{'total':<{w}}  {tot[0]:>6}  {tot[1]:>6}  {tot[2]:>7}  {tot[3]:>6}")
print(f'results: {root}/summary.tsv (per case: {root}/<suite>/cases.tsv)')
print(f'{tot[0]} passed, {tot[1]} failed, {tot[2]} skipped')
sys.exit(1 if tot[1] or tot[3] or tot[0] == 0 else 0)
