#!/usr/bin/python3
# check-layers.py SOURCE_DIR BUILD_DIR
#
# Checks the structure of daemon/: its layers, its cycles and the size of
# its files. Python 3 standard library only, plus nm(1).
#
# daemon/ has two layers and a top:
#   daemon/api/*.c  the D-Bus method handlers, one file per API domain;
#   daemon/main.c   the top, which wires everything together;
#   everything else under daemon/ is "the core" (bus.c, pool.c, audit.c,
#                   scheduler.c, store.c, ...).
#
# Two graphs are built, whose nodes are paths relative to SOURCE_DIR
# (daemon/bus.c, daemon/api/keys.c, daemon/store.h):
#   call graph     from the objects under BUILD_DIR/daemon/CMakeFiles/
#                  (kmsd-core.dir, kmsd.dir, searched recursively). An object
#                  CMakeFiles/<target>.dir/<rel>.o stands for the source
#                  daemon/<rel>; an object whose source is not a file under
#                  SOURCE_DIR/daemon (the generated introspect-xml.c, under
#                  "__/", or a stale object whose source was moved) is
#                  skipped. A -> B when A has an undefined symbol that B
#                  defines as a global (nm -P). Symbols that no daemon object
#                  defines (libc, libdbus, common/, ...) are ignored.
#   include graph  from every *.c and *.h under SOURCE_DIR/daemon: a line
#                  #include "name.h" (quoted only) is resolved against the
#                  including file's directory, then daemon/, then
#                  daemon/api/; names that resolve nowhere under daemon/
#                  (common/ headers and the like) are ignored.
#
# Checks, each printed as one "PASS: ..." or "FAIL: ..." line (some FAIL
# lines are followed by indented detail lines):
#   sanity   at least 10 daemon objects, at least one call edge, and at
#            least one object for a file under daemon/api/; otherwise the
#            build dir looks wrong and the other checks would pass for
#            nothing;
#   cycles   no strongly connected component of more than one file, in the
#            call graph or in the include graph (one FAIL per component,
#            with one cycle through it; call edges name one symbol each);
#   layers   no core file calls into or includes a file under daemon/api/
#            (one FAIL per pair of files, naming a symbol or the header);
#   size     no daemon/**/*.c or *.h is longer than 800 lines.
# Then a short summary of the graphs, and a last line "N passed, M failed".
#
# Exit status: 0 when nothing failed, 1 otherwise, 77 (skip) when nm is not
# found. The nm used is $NM if set, else "nm" on PATH.

import os
import shutil
import subprocess
import sys
from collections import deque

MAX_LINES = 800
MIN_OBJECTS = 10

passed = 0
failed = 0


def report_pass(msg):
    global passed
    passed += 1
    print("PASS: " + msg)


def report_fail(msg, details=()):
    global failed
    failed += 1
    print("FAIL: " + msg)
    for d in details:
        print("    " + d)


def is_api(node):
    return node.startswith("daemon/api/")


def is_core(node):
    return node.startswith("daemon/") and not is_api(node) and node != "daemon/main.c"


# ---------------------------------------------------------------- objects

def find_objects(src_dir, build_dir):
    """[(node, object path)] for the daemon objects, plus skipped objects."""
    cmake_dir = os.path.join(build_dir, "daemon", "CMakeFiles")
    daemon_src = os.path.join(src_dir, "daemon")
    found, skipped = [], []
    if not os.path.isdir(cmake_dir):
        return found, skipped
    for root, dirs, files in os.walk(cmake_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".o"):
                continue
            obj = os.path.join(root, name)
            parts = os.path.relpath(obj, cmake_dir).split(os.sep)
            # parts[0] is "<target>.dir"; the rest is the source's path
            # relative to daemon/ with ".o" appended.
            if len(parts) < 2 or not parts[0].endswith(".dir"):
                skipped.append(obj)
                continue
            rel = "/".join(parts[1:])[:-len(".o")]
            candidates = [rel]
            if not rel.endswith((".c", ".cc", ".cpp")):
                candidates.append(rel + ".c")  # objects named x.o, not x.c.o
            node = None
            for cand in candidates:
                path = os.path.normpath(os.path.join(daemon_src, cand))
                inside = path.startswith(os.path.normpath(daemon_src) + os.sep)
                if inside and os.path.isfile(path):
                    node = "daemon/" + os.path.relpath(path, daemon_src).replace(os.sep, "/")
                    break
            if node is None:
                skipped.append(obj)
            else:
                found.append((node, obj))
    return found, skipped


UNDEFINED_TYPES = set("Uwv")
# Global definitions: text, data, bss, read-only, weak, common, small data,
# unique globals, absolute. Lower-case letters other than u are local.
DEFINED_TYPES = set("TDBRWVCGSAu")


def read_symbols(nm, obj):
    """(defined globals, undefined) symbol sets of one object, or an error."""
    try:
        res = subprocess.run([nm, "-P", obj], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    except OSError as e:
        return None, None, str(e)
    if res.returncode != 0:
        return None, None, (res.stderr.strip() or "exit %d" % res.returncode)
    defined, undefined = set(), set()
    for line in res.stdout.splitlines():
        fields = line.split()
        if len(fields) < 2 or len(fields[1]) != 1:
            continue
        sym, kind = fields[0], fields[1]
        if kind in UNDEFINED_TYPES:
            undefined.add(sym)
        elif kind in DEFINED_TYPES:
            defined.add(sym)
    return defined, undefined, None


def build_call_graph(nm, objects):
    """{node: {node: set(symbols)}} and a list of nm errors."""
    defs, undefs, errors = {}, {}, []
    for node, obj in objects:
        d, u, err = read_symbols(nm, obj)
        if err is not None:
            errors.append("%s: %s" % (obj, err))
            continue
        defs.setdefault(node, set()).update(d)
        undefs.setdefault(node, set()).update(u)
    definers = {}
    for node, syms in defs.items():
        for s in syms:
            definers.setdefault(s, set()).add(node)
    graph = {node: {} for node in defs}
    for node, syms in undefs.items():
        for s in syms:
            for target in definers.get(s, ()):
                if target != node:
                    graph[node].setdefault(target, set()).add(s)
    return graph, errors


# ---------------------------------------------------------------- includes

def parse_include(line):
    """The name of a quoted #include on this line, else None."""
    s = line.strip()
    if not s.startswith("#"):
        return None
    s = s[1:].lstrip()
    if not s.startswith("include"):
        return None
    s = s[len("include"):].lstrip()
    if not s.startswith('"'):
        return None
    end = s.find('"', 1)
    if end <= 1:
        return None
    return s[1:end]


def daemon_files(src_dir):
    daemon_src = os.path.join(src_dir, "daemon")
    out = []
    for root, dirs, files in os.walk(daemon_src):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".c", ".h")):
                path = os.path.join(root, name)
                out.append(("daemon/" + os.path.relpath(path, daemon_src).replace(os.sep, "/"), path))
    return out


def build_include_graph(src_dir, files):
    """{node: {node: set(names as written)}}."""
    daemon_src = os.path.normpath(os.path.join(src_dir, "daemon"))
    graph = {node: {} for node, _ in files}
    for node, path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        for line in lines:
            name = parse_include(line)
            if name is None:
                continue
            for base in (os.path.dirname(path), daemon_src, os.path.join(daemon_src, "api")):
                cand = os.path.normpath(os.path.join(base, name))
                if not cand.startswith(daemon_src + os.sep) or not os.path.isfile(cand):
                    continue
                target = "daemon/" + os.path.relpath(cand, daemon_src).replace(os.sep, "/")
                if target != node:
                    graph[node].setdefault(target, set()).add(name)
                break
    return graph


# ---------------------------------------------------------------- cycles

def tarjan(graph):
    """Strongly connected components, iteratively (no recursion limit)."""
    index, low, on_stack = {}, {}, set()
    stack, sccs, counter = [], [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                sccs.append(sorted(comp))
    return sccs


def shortest_path(graph, members, src, dst):
    """Shortest path src .. dst inside members (BFS), or None."""
    prev = {src: None}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if node == dst:
            path = [node]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])
            return path[::-1]
        for nxt in sorted(graph[node]):
            if nxt in members and nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return None


def cycles_covering(graph, comp):
    """Cycles (lists of files, first == last) through every edge of a
    component: for each edge a -> b its shortest cycle a -> b .. a, the
    shortest first, keeping a cycle only if it has an edge not yet shown."""
    members = set(comp)
    candidates = []
    for a in comp:
        for b in sorted(graph[a]):
            if b in members:
                back = shortest_path(graph, members, b, a)
                candidates.append([a] + back)
    candidates.sort(key=lambda c: (len(c), c))
    covered, chosen = set(), []
    for cyc in candidates:
        edges = set(zip(cyc, cyc[1:]))
        if edges - covered:
            # Start the cycle at its smallest file, for a stable output.
            ring = cyc[:-1]
            i = ring.index(min(ring))
            ring = ring[i:] + ring[:i]
            chosen.append(ring + [ring[0]])
            covered |= edges
    return chosen


def format_cycle(graph, cycle, with_labels):
    text = cycle[0]
    for a, b in zip(cycle, cycle[1:]):
        text += " -> " + b
        if with_labels:
            text += " (%s)" % sorted(graph[a][b])[0]
    return text


def check_cycles(kind, graph, with_labels):
    """One FAIL per strongly connected component of more than one file: the
    FAIL line has its shortest cycle, the detail lines further cycles until
    every edge inside the component has been shown."""
    found = False
    for comp in tarjan(graph):
        if len(comp) < 2:
            continue
        found = True
        cycles = cycles_covering(graph, comp)
        details = ["files: " + ", ".join(comp)]
        details += ["also: " + format_cycle(graph, c, with_labels) for c in cycles[1:]]
        report_fail("%s cycle among %d files: %s"
                    % (kind, len(comp), format_cycle(graph, cycles[0], with_labels)),
                    details)
    if not found:
        report_pass("no %s cycles (%d files)" % (kind, len(graph)))


# ---------------------------------------------------------------- main

def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: %s SOURCE_DIR BUILD_DIR\n" % argv[0])
        return 2
    src_dir, build_dir = os.path.abspath(argv[1]), os.path.abspath(argv[2])

    nm = os.environ.get("NM") or "nm"
    if shutil.which(nm) is None:
        print("SKIP: %s not found" % nm)
        return 77

    if not os.path.isdir(os.path.join(src_dir, "daemon")):
        report_fail("%s/daemon is not a directory: SOURCE_DIR looks wrong" % src_dir)

    # -- call graph
    objects, skipped = find_objects(src_dir, build_dir)
    call_graph, nm_errors = build_call_graph(nm, objects)
    for err in nm_errors:
        report_fail("nm could not read an object: " + err)
    n_call_edges = sum(len(v) for v in call_graph.values())
    api_objects = sorted(n for n in call_graph if is_api(n))

    # -- sanity
    where = os.path.join(build_dir, "daemon", "CMakeFiles")
    if len(call_graph) < MIN_OBJECTS:
        report_fail("only %d daemon objects under %s (at least %d expected): "
                    "the build dir looks wrong or not built"
                    % (len(call_graph), where, MIN_OBJECTS))
    else:
        report_pass("%d daemon objects under %s" % (len(call_graph), where))
    if n_call_edges == 0:
        report_fail("the call graph has no edges: the build dir looks wrong "
                    "(objects not built, or stripped)")
    else:
        report_pass("call graph has %d edges" % n_call_edges)
    if not api_objects:
        report_fail("no object for any file under daemon/api/ in %s: the build "
                    "dir looks wrong (or daemon/api/ is not built yet)" % where)
    else:
        report_pass("%d objects for files under daemon/api/" % len(api_objects))

    # -- include graph
    files = daemon_files(src_dir)
    include_graph = build_include_graph(src_dir, files)
    n_include_edges = sum(len(v) for v in include_graph.values())

    # -- cycles
    check_cycles("call", call_graph, True)
    check_cycles("include", include_graph, False)

    # -- layers
    bad = False
    for a in sorted(call_graph):
        if not is_core(a):
            continue
        for b in sorted(call_graph[a]):
            if is_api(b):
                bad = True
                syms = sorted(call_graph[a][b])
                report_fail("core file %s calls into %s (%s)" % (a, b, ", ".join(syms)))
    if not bad:
        report_pass("no core file calls into daemon/api/")
    bad = False
    for a in sorted(include_graph):
        if not is_core(a):
            continue
        for b in sorted(include_graph[a]):
            if is_api(b):
                bad = True
                names = sorted(include_graph[a][b])
                report_fail("core file %s includes %s (#include \"%s\")"
                            % (a, b, '", "'.join(names)))
    if not bad:
        report_pass("no core file includes a file under daemon/api/")

    # -- size
    bad = False
    for node, path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            n = len(f.read().splitlines())
        if n > MAX_LINES:
            bad = True
            report_fail("%s has %d lines (at most %d)" % (node, n, MAX_LINES))
    if not bad:
        report_pass("no daemon/ file is longer than %d lines (%d files)" % (MAX_LINES, len(files)))

    # -- summary
    print("summary: %d daemon source files (%d .c, %d .h), %d objects "
          "(%d other objects skipped), %d call edges, %d include edges"
          % (len(files), sum(1 for n, _ in files if n.endswith(".c")),
             sum(1 for n, _ in files if n.endswith(".h")), len(call_graph),
             len(skipped), n_call_edges, n_include_edges))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
