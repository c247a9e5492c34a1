#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Turn one suite's run directory into per-case results.

Reads output.log (TAP from kselftest/KTAP, or a GoogleTest XML report),
exit_status and splats from the run directory, and require_log if there is
one (lines the guest's kernel log must contain, e.g. that a configuration
the suite boots with took effect); writes cases.tsv
(case, status, detail) and result.tsv (suite, passed, failed, skipped,
splats) there. Exit status: 0 if the suite passed, 77 if every case was
skipped, 1 otherwise.

A case counts as passed only when the test said so: a skip is a skip, a
missing result (plan says N, fewer reported) or a crash is a failure, and
a non-zero exit status with no failing case is a failure of its own.
"""
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

KSFT_SKIP = 4
GTEST_TIMES = {}
TAP_RE = re.compile(r'^(not ok|ok) (\d+)(?: -)? ?([^#]*?)\s*(?:#\s*(\S+)\s*(.*))?$')


def parse_tap(lines, prefix=''):
    """Top-level TAP results (kselftest harness / kselftest.h / KTAP)."""
    cases, plan = [], None
    for line in lines:
        if m := re.match(r'^1\.\.(\d+)\s*$', line):
            # The first plan is the program's; a later "1..0" comes from a
            # skip helper inside a test and is not a plan.
            if plan is None:
                plan = int(m.group(1))
            continue
        m = TAP_RE.match(line)
        if not m:
            continue
        ok, _num, name, directive, reason = m.groups()
        name = prefix + (name.strip() or f'case{_num}')
        directive = (directive or '').upper()
        if directive == 'SKIP':
            cases.append((name, 'skipped', reason.strip()))
        elif ok == 'ok' or directive in ('XFAIL', 'TODO'):
            cases.append((name, 'passed', directive.lower()))
        else:
            cases.append((name, 'failed', reason.strip() if reason else ''))
    return cases, plan


def parse_ktap(lines):
    """KUnit's KTAP: suites at the top level, their cases indented by four
    spaces (a parameterised case's own parameters deeper, summarised by the
    case's line). Counts the cases; a suite whose plan is not met, or a top
    level plan not met, is a failure."""
    cases, suite, plan_top, top_results = [], None, None, 0
    case_plan, case_seen = None, 0
    for raw in lines:
        indent = len(raw) - len(raw.lstrip(' '))
        line = raw.strip()
        if indent == 0:
            if m := re.match(r'^1\.\.(\d+)$', line):
                plan_top = int(m.group(1))
            elif TAP_RE.match(line):
                top_results += 1
                if case_plan is not None and case_seen < case_plan:
                    cases.append((f'{suite}: missing results', 'failed',
                                  f'plan 1..{case_plan}, {case_seen} reported'))
                case_plan, case_seen = None, 0
        elif indent == 4:
            if m := re.match(r'^# Subtest: (\S+)', line):
                suite = m.group(1)
            elif m := re.match(r'^1\.\.(\d+)$', line):
                case_plan = int(m.group(1))
            else:
                sub, _ = parse_tap([line], prefix=f'{suite}.')
                cases += sub
                case_seen += len(sub)
    return cases, plan_top, top_results


def case_durations(ts_path):
    """Seconds each TAP case took, from output.ts (guest uptime, tab, line,
    written by the guest's /init as the lines arrived). A kselftest harness
    case runs from its "#  RUN" line to its result line; other TAP cases
    from the previous result line. Output is block-buffered, but the
    harness flushes before each case's fork, so both ends are flushed when
    they happen. Returns {case name: seconds}."""
    durs = {}
    if not ts_path.exists():
        return durs
    start, last = {}, None
    for raw in ts_path.read_text(errors='replace').splitlines():
        t, _, line = raw.partition('\t')
        try:
            t = float(t)
        except ValueError:
            continue
        if last is None:
            last = t
        if m := re.match(r'^#\s+RUN\s+(\S+)', line):
            start[m.group(1)] = t
            continue
        m = TAP_RE.match(line)
        if not m:
            continue
        name = m.group(3).strip()
        durs[name] = round(t - start.pop(name, last), 1)
        last = t
    return durs


def parse_gtest(xml_path):
    cases = []
    root = ET.parse(xml_path).getroot()
    for tc in root.iter('testcase'):
        name = f"{tc.get('classname')}.{tc.get('name')}"
        if tc.get('result') == 'skipped' or tc.find('skipped') is not None:
            sk = tc.find('skipped')
            cases.append((name, 'skipped', ' '.join(((sk.get('message') if sk is not None else '') or '').split())))
        elif tc.find('failure') is not None or tc.find('error') is not None:
            f = tc.find('failure') if tc.find('failure') is not None else tc.find('error')
            cases.append((name, 'failed', (f.get('message') or '').splitlines()[0] if f.get('message') else ''))
        elif tc.get('status') == 'notrun':
            cases.append((name, 'skipped', 'disabled'))
        else:
            cases.append((name, 'passed', ''))
        try:
            GTEST_TIMES[name] = round(float(tc.get('time') or 0), 1)
        except ValueError:
            pass
    return cases


def main():
    suite, rundir = sys.argv[1], Path(sys.argv[2])
    out = (rundir / 'output.log').read_text(errors='replace') if (rundir / 'output.log').exists() else ''
    lines = out.splitlines()
    try:
        rc = int((rundir / 'exit_status').read_text().strip())
    except (OSError, ValueError):
        rc = 125
    splats = [l for l in (rundir / 'splats').read_text(errors='replace').splitlines()
              if l.strip()] if (rundir / 'splats').exists() else []

    xmls = sorted(rundir.glob('*.xml'))
    if xmls:
        cases = []
        for x in xmls:
            try:
                cases += parse_gtest(x)
            except ET.ParseError as e:
                cases.append((f'{suite}: {x.name}', 'failed', f'unreadable report: {e}'))
        plan = None
    elif any(l.startswith('KTAP version') for l in lines):
        cases, plan, top = parse_ktap(lines)
        if plan is not None and top < plan:
            cases.append((f'{suite}: missing suites', 'failed', f'plan 1..{plan}, {top} reported'))
        plan = None
    else:
        cases, plan = parse_tap(lines)

    if not cases and plan is None:
        # A plain program: one case, judged by its exit status.
        status = 'passed' if rc == 0 else 'skipped' if rc == KSFT_SKIP else 'failed'
        cases = [(suite, status, f'exit status {rc}')]
    else:
        if plan is not None and len(cases) < plan:
            cases.append((f'{suite}: missing results', 'failed',
                          f'plan 1..{plan}, {len(cases)} reported'))
        if rc not in (0, KSFT_SKIP) and not any(c[1] == 'failed' for c in cases):
            cases.append((f'{suite}: exit status', 'failed', f'exit status {rc}'))
    if rc in (124, 125):
        cases.append((f'{suite}: guest', 'failed',
                      'timed out' if rc == 124 else 'guest died before the program finished'))
    if splats:
        cases.append((f'{suite}: kernel log', 'failed', f'{len(splats)} splat line(s): {splats[0]}'))
    # A configuration that did not take effect would pass as the plain run.
    if (rundir / 'require_log').exists():
        klog = ''.join((rundir / f).read_text(errors='replace')
                       for f in ('dmesg.log', 'console.log') if (rundir / f).exists())
        for want in (rundir / 'require_log').read_text().splitlines():
            if want.strip() and want not in klog:
                cases.append((f'{suite}: required kernel log line', 'failed',
                              f'not in the kernel log: {want}'))

    n = {s: sum(1 for c in cases if c[1] == s) for s in ('passed', 'failed', 'skipped')}
    durs = dict(GTEST_TIMES) if xmls else case_durations(rundir / 'output.ts')

    def num(name):
        try:
            return float((rundir / name).read_text().strip())
        except (OSError, ValueError):
            return None
    wall, t_init, t_exit = num('wall_seconds'), num('init_seconds'), num('exit_seconds')
    run = t_exit - t_init if t_init is not None and t_exit is not None else None
    if run is not None and len(cases) == 1 and not durs:
        durs = {cases[0][0]: round(run, 1)}  # a plain program: one case
    slow = max(durs.items(), key=lambda kv: kv[1], default=('-', 0.0))
    with open(rundir / 'cases.tsv', 'w') as f:
        f.write('case\tstatus\tdetail\tseconds\n')
        for c in cases:
            d = durs.get(c[0], durs.get(c[0].split(' ')[0]))
            f.write('\t'.join(x.replace('\t', ' ') for x in c) +
                    f"\t{'' if d is None else d}\n")

    def fmt(x):
        return '' if x is None else f'{x:.1f}'
    # suite, passed, failed, skipped, splats, then times in seconds: the
    # guest's wall time, its boot and shutdown (wall less the program), the
    # program's run, the slowest case and its name.
    with open(rundir / 'result.tsv', 'w') as f:
        f.write(f"{suite}\t{n['passed']}\t{n['failed']}\t{n['skipped']}\t{len(splats)}\t"
                f"{fmt(wall)}\t{fmt(wall - run if wall is not None and run is not None else None)}\t"
                f"{fmt(run)}\t{fmt(slow[1])}\t{slow[0]}\n")
    for c in cases:
        if c[1] != 'passed':
            print(f'{suite}: {c[1].upper()}: {c[0]} {c[2]}'.rstrip())
    print(f"{suite}: {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped, {len(splats)} splats")
    if n['failed']:
        return 1
    if n['passed'] == 0:
        return 77
    return 0


if __name__ == '__main__':
    sys.exit(main())
