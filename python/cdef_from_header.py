"""Turns the cbindgen header include/os_lively.h into a cffi cdef.

cffi's parser takes plain C declarations without preprocessor lines, so
this keeps the C view of the header (no C++ or C23 branches), drops
comments and includes, and turns each `#define NAME value` into cffi's
`#define NAME ...` (the compiler fills in the value from the real header).
Only the text is transformed; every declaration comes from the header.
"""

import re

_C_VIEW_FALSE = ("__cplusplus", "__STDC_VERSION__")


def _condition(line):
    """Whether a conditional line is true when compiling as C11."""
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    if word == "#ifdef":
        return rest not in _C_VIEW_FALSE
    if word == "#ifndef":
        return True  # include guard, or `#ifndef __cplusplus`
    if any(name in rest for name in _C_VIEW_FALSE):
        return False  # `#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L`
    raise ValueError("cdef_from_header: unsupported conditional %r" % line)


def cdef_from_header(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    stack = []  # (this branch taken, parent active)
    for raw in text.splitlines():
        line = raw.strip()
        active = all(taken for taken, _ in stack)
        if line.startswith("#"):
            word = line.split()[0]
            if word in ("#if", "#ifdef", "#ifndef"):
                stack.append((_condition(line), active))
            elif word == "#else":
                taken, parent = stack.pop()
                stack.append((not taken, parent))
            elif word == "#endif":
                stack.pop()
            elif word == "#define" and active:
                parts = line.split(None, 2)
                if len(parts) == 3:
                    out.append("#define %s ..." % parts[1])
            # #include and anything else: nothing for cffi
            continue
        if active and line:
            out.append(raw)
    if stack:
        raise ValueError("cdef_from_header: unbalanced conditionals")
    return "\n".join(out) + "\n"
