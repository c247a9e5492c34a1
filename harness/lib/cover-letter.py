#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Write the cover letter into git format-patch's template, from its source
(docs/cover-letter.txt: the first line is the subject, the rest the body)
with the placeholders filled in from what the repository recorded:

  @@BASE@@           the base kernel: Debian's version and tarball sha256
  @@TEST_RESULTS@@   the test command's results (RESULTS/summary.tsv) if
                     that run tested these patches (RESULTS/series-digest)
  @@CHECK_RESULTS@@  the per-patch check (CHECK/results.tsv) if it checked
                     these patches (CHECK/series-digest), then every
                     finding check-allow.tsv allows, with its reason

A run of other patches, or none, is said as such in the letter and on
stderr. An unknown placeholder is an error.

Usage: cover-letter.py --cover FILE --source FILE --results DIR --check DIR
                       --allow FILE --digest DIGEST --patches N
                       --base-version V --base-sha256 SHA
"""
import argparse
import csv
import re
import sys
import textwrap
from pathlib import Path


def ran(d, digest):
    f = d / 'series-digest'
    return f.exists() and f.read_text().strip() == digest


def num(x):
    return int(x) if x.isdigit() else 0


def base(a):
    return (f"Base: Linux 7.3.4 as Debian ships it (linux-source-7.3\n"
            f"{a.base_version}, tarball sha256\n{a.base_sha256}). The\n"
            "base-commit below names that tree as imported from the tarball,\n"
            "without upstream history.")


def test_results(a):
    res = a.results
    if not (res / 'summary.tsv').exists() or not ran(res, a.digest):
        print(f'cover-letter: no test results of these patches in {res}; '
              'the letter says so', file=sys.stderr)
        return ('[No test results of this version of the series yet: run the\n'
                'test command, then export again.]')
    rows = list(csv.reader(open(res / 'summary.tsv'), delimiter='\t'))[1:]
    cfg = (res / 'config').read_text().strip() if (res / 'config').exists() else 'test'
    flt = (res / 'filter').read_text().strip() if (res / 'filter').exists() else ''
    # Host tests (build, lint) have no guest time.
    guest = [r for r in rows if len(r) > 5 and r[5]]
    host = [r for r in rows if not (len(r) > 5 and r[5])]
    tot = [sum(num(r[i]) for r in rows) for i in range(1, 5)]
    out = [f"The last test run, kernel config '{cfg}' (lockdep, KASAN, DEBUG_VM)"
           + (f", a partial run (CTest arguments '{flt}')" if flt else '') + ':', '']
    w = max([len(r[0]) + 2 for r in rows] + [26])
    for title, part in (('in a guest', guest), ('on the host: build, lint', host)):
        if not part:
            continue
        out.append(f"  {title:{w}} {'pass':>5} {'fail':>5} {'skip':>5} {'splat':>5}")
        for r in part:
            out.append(f"    {r[0]:{w - 2}} {num(r[1]):5} {num(r[2]):5} {num(r[3]):5} {num(r[4]):5}")
    out.append(f"  {'total':{w}} {tot[0]:5} {tot[1]:5} {tot[2]:5} {tot[3]:5}")
    if tot[2]:
        out += ['', 'Skipped cases are VM types the test machine does not offer (SEV-SNP,',
                'TDX) and upstream iommufd cases that need a vIOMMU object.']
    return '\n'.join(out)


def check_results(a):
    out = []
    f = a.check / 'results.tsv'
    if f.exists() and ran(a.check, a.digest):
        rows = [ln.rstrip('\n').split('\t') for ln in open(f) if ln.strip()]
        out += ['Every patch was also checked on its own, applied in order on the base:',
                'built with KVM, iommufd and VFIO built in and as modules (modpost',
                'catches a missing export), W=1 and sparse on the .c files it touches,',
                'kernel-doc -Wall on the .c and .h files it touches (only warnings the',
                'patch adds count), and checkpatch --strict; checkpatch findings are',
                'counted as not allowed (+ allowed):', '']
        out.append(f"  {'patch':6} {'=y':4} {'=m':4} {'new W=1/sparse':16} "
                   f"{'checkpatch':16} kernel-doc")
        for r in rows:
            nn, y, m, w, cp, kd = r[:6]
            w = w.replace('- (no kernel .c)', 'no .c file')
            kd = kd.replace('- (no .c/.h)', 'no .c/.h')
            out.append(f"  {nn:6} {y:4} {m:4} {w:16} {cp:16} {kd}")
        if len(rows) != a.patches:
            out.append('')
            out.append(f'Only patches {rows[0][0]}-{rows[-1][0]} of {a.patches} were checked.')
    else:
        print(f'cover-letter: no per-patch check of these patches in {a.check}; '
              'the letter says so', file=sys.stderr)
        out.append('[No per-patch check of this version of the series yet: run\n'
                   'the check, then export again.]')
    out += ['', 'The check allows these findings, each for the reason given:', '']
    for line in open(a.allow):
        p = line.rstrip('\n').split('\t')
        if line.startswith('#') or len(p) != 5:
            continue
        tool, patches, where, what, reason = p
        what = re.sub(r'\\(.)', r'\1', what)  # a regex: as checkpatch prints it
        head = (f"- {tool}, {'every patch' if patches == '*' else 'patch ' + patches}, "
                f"{'any file' if where == '*' else where}: {what}")
        out.append(textwrap.fill(head, 72, subsequent_indent='  '))
        out.append(textwrap.fill(reason, 72, initial_indent='  ', subsequent_indent='  '))
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser()
    for opt in ('cover', 'source', 'results', 'check', 'allow'):
        ap.add_argument('--' + opt, type=Path, required=True)
    ap.add_argument('--digest', required=True)
    ap.add_argument('--patches', type=int, required=True)
    ap.add_argument('--base-version', required=True)
    ap.add_argument('--base-sha256', required=True)
    a = ap.parse_args()

    fill = {'BASE': base, 'TEST_RESULTS': test_results, 'CHECK_RESULTS': check_results}
    subject, body = a.source.read_text().split('\n', 1)

    def put(m):
        if m.group(1) not in fill:
            sys.exit(f'cover-letter: {a.source}: unknown placeholder {m.group(0)}')
        return fill[m.group(1)](a)
    body = re.sub(r'@@([A-Z_]+)@@', put, body.strip('\n'))
    s = a.cover.read_text()
    if '*** SUBJECT HERE ***' not in s or '*** BLURB HERE ***' not in s:
        sys.exit(f'cover-letter: {a.cover} is not git format-patch\'s template')
    s = s.replace('*** SUBJECT HERE ***', subject.strip())
    s = s.replace('*** BLURB HERE ***', body)
    a.cover.write_text(s)


if __name__ == '__main__':
    main()
