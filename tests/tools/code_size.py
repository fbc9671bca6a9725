#!/usr/bin/env python3
"""code_size: fails when a source file under agent/, coordinator/ or proto/ is
over 900 lines or a function in it is over 80 lines (issue 13's bound)."""
import pathlib
import re
import sys

FILE_MAX, FUNC_MAX = 900, 80
top = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else '.')
bad = []
for d in ('agent', 'coordinator', 'proto'):
    for p in sorted((top / d).glob('*.[ch]')):
        if '.pb-c.' in p.name:
            continue
        lines = p.read_text().split('\n')
        if len(lines) - 1 > FILE_MAX:
            bad.append(f'{p.relative_to(top)}: {len(lines) - 1} lines (max {FILE_MAX})')
        i = 0
        while i < len(lines):
            # A function body opens with "{" alone in column 0 (the project's style).
            if lines[i] == '{':
                j = i - 1
                while j > 0 and not re.match(r'^[A-Za-z_].*\(', lines[j]):
                    j -= 1
                m = re.search(r'([A-Za-z_0-9]+)\s*\(', lines[j])
                k = i + 1
                while k < len(lines) and lines[k] != '}':
                    k += 1
                n = k - i + 1
                if n > FUNC_MAX:
                    bad.append(f'{p.relative_to(top)}:{j + 1}: {m.group(1) if m else "?"}() is {n} lines (max {FUNC_MAX})')
                i = k
            i += 1
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
