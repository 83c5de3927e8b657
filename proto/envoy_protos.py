"""Generates protobuf-c code for the Envoy API messages router-srv serves.

The Envoy API protos come from npm (@grpc/grpc-js-xds ships them under
deps/), not from this checkout. Their validate/validate.proto is older
than the envoy protos that use it (protoc: "validate.StringRules has no
field named ignore_empty"), and none of the annotation options matter on
the wire, so each file of the import closure of ROOTS is copied with every
annotation option ((validate.*), (udpa.annotations.*), (xds.annotations.*),
(envoy.annotations.*)) and the imports of those annotation files removed,
then the whole set goes through protoc-c once.

Only the closure of the given roots is copied: listing a message file
pulls in what its fields need and nothing else.

Outputs (meson lists only these two; the generated tree lands next to
them under envoy/, google/, xds/, udpa/):
  OUT_C  one C file including every generated .pb-c.c (one object to build)
  OUT_H  one header including every generated .pb-c.h

usage: envoy_protos.py PROTOC_C DEPS_DIR WKT_DIR OUT_C OUT_H DEPFILE ROOT...
"""
import os
import re
import shutil
import subprocess
import sys

ANNOTATION = re.compile(r'\(\s*\.?(validate|udpa\.annotations|xds\.annotations'
                        r'|envoy\.annotations)\.')
ANNOTATION_IMPORT = re.compile(r'^(validate/|udpa/annotations/|'
                               r'xds/annotations/|envoy/annotations/)')
IMPORT = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;',
                    re.M)
WKT = 'google/protobuf/'


def strip_comments(text):
    """The text without // and /* */ comments (strings kept intact), so
    brackets and semicolons in comments never confuse the option scan."""
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i] in '"\'':
            i = copy_string(text, i, out)
        elif text.startswith('//', i):
            while i < n and text[i] != '\n':
                i += 1
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(text[i])
            i += 1
    return ''.join(out)


def copy_string(text, i, out):
    """Appends the string literal at text[i] to out; the index past it."""
    j = skip_string(text, i)
    out.append(text[i:j])
    return j


def skip_string(text, i):
    """Index just past the string literal starting at text[i]."""
    quote, i = text[i], i + 1
    while i < len(text) and text[i] != quote:
        i += 2 if text[i] == '\\' else 1
    return i + 1


def skip_balanced(text, i, stop):
    """Index of the first `stop` character at nesting depth 0 from i."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in '"\'':
            i = skip_string(text, i)
            continue
        if depth == 0 and c in stop:
            return i
        if c in '[{(<':
            depth += 1
        elif c in ']})>':
            depth -= 1
        i += 1
    return i


def split_top(text):
    """text split on the commas at depth 0."""
    parts, start, i = [], 0, 0
    while True:
        j = skip_balanced(text, i, ',')
        if j >= len(text):
            parts.append(text[start:])
            return parts
        parts.append(text[start:j])
        start = i = j + 1


def strip_options(text):
    """Drops the annotation options: `[...]` field/value options (keeping
    any others, like deprecated = true) and `option (...) = ...;`
    statements."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in '"\'':
            i = copy_string(text, i, out)
            continue
        if c == '[':
            end = skip_balanced(text, i + 1, ']')
            if end >= n:
                sys.exit('envoy_protos.py: unbalanced [ in an option')
            kept = [p.strip() for p in split_top(text[i + 1:end])
                    if p.strip() and not ANNOTATION.match(p.strip())]
            if kept:
                out.append('[' + ', '.join(kept) + ']')
            i = end + 1
            continue
        m = re.match(r'option\s*\(', text[i:])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == '_')):
            end = skip_balanced(text, i, ';')
            stmt = text[i:end + 1]
            if ANNOTATION.search(stmt.split('=', 1)[0]):
                i = end + 1
                continue
        out.append(c)
        i += 1
    return ''.join(out)


def find(roots, name):
    for r in roots:
        path = os.path.join(r, name)
        if os.path.isfile(path):
            return path
    sys.exit('envoy_protos.py: %s not found under %s' % (name, ', '.join(roots)))


def main():
    protoc_c, deps, wkt_dir, out_c, out_h, depfile = sys.argv[1:7]
    roots = sys.argv[7:]
    search = [os.path.join(deps, d)
              for d in ('envoy-api', 'googleapis', 'xds', 'protoc-gen-validate')]
    gen = os.path.dirname(os.path.abspath(out_c))
    src = os.path.join(gen, 'envoy_src')
    shutil.rmtree(src, ignore_errors=True)

    seen, order, read, stack = set(), [], [], list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith(WKT):
            # Well-known types come from the installed protobuf, unchanged.
            path = find([wkt_dir], name)
            text = open(path).read()
        else:
            path = find(search, name)
            text = strip_options(strip_comments(open(path).read()))
            text = IMPORT.sub(lambda m: '' if ANNOTATION_IMPORT.match(
                m.group(1)) else m.group(0), text)
        read.append(path)
        order.append(name)
        dest = os.path.join(src, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, 'w') as f:
            f.write(text)
        stack.extend(m.group(1) for m in IMPORT.finditer(text))

    order.sort()
    subprocess.run([protoc_c, '--c_out=' + gen, '-I' + src]
                   + [os.path.join(src, p) for p in order], check=True)
    base = [p[:-len('.proto')] for p in order]
    with open(out_c, 'w') as f:
        f.write('/* Generated by proto/envoy_protos.py: every Envoy API file\n'
                ' * router-srv needs, in one object. */\n')
        for b in base:
            f.write('#include "%s.pb-c.c"\n' % b)
    with open(out_h, 'w') as f:
        f.write('/* Generated by proto/envoy_protos.py. */\n'
                '#ifndef ENVOY_PROTOS_H\n#define ENVOY_PROTOS_H\n')
        for b in base:
            f.write('#include "%s.pb-c.h"\n' % b)
        f.write('#endif\n')
    with open(depfile, 'w') as f:
        f.write('%s: %s\n' % (out_c.replace(' ', '\\ '),
                              ' '.join(p.replace(' ', '\\ ') for p in read)))


if __name__ == '__main__':
    main()
